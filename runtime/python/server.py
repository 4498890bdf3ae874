#!/usr/bin/env python3
"""modelplane's model server for the `python` runtime.

Usage: python3 server.py --package DIR

Loads DIR/model/model.py (or where the config says, see below), constructs its class `Model`
(Truss's interface), calls `load()` in the background and serves `predict(model_input)` over
HTTP. Python 3.9+ standard library only, so that it runs on any host and in any image without
installing anything.

Package layout, from the config's keys as Truss defines them (the default when a key is
absent or null), paths relative to DIR:
  model_module_dir       "model"     the directory of the model's module; on sys.path
  model_class_filename   "model.py"  the module's file in that directory
  model_class_name       "Model"     the class constructed
  data_dir               "data"      passed to the class as `data_dir`, a pathlib.Path
  bundled_packages_dir   "packages"  on sys.path
  external_package_dirs  []          each on sys.path: entry i is DIR/.external/<i> when that
                                     directory exists (the CLI packs a directory outside the
                                     package there), else the entry itself inside DIR
  runtime.predict_concurrency  1     the most predict calls in the model at once; more wait
                                     their turn (a streamed answer holds its slot until the
                                     stream ends). Health, liveness, reload and websocket
                                     routes are not limited by it.
A module file that is missing, or a class it does not define, is a load failure that names
them ("src/my_model.py not found in DIR", "model/model.py defines no class MyModel").

Environment:
  PORT                     port to listen on (default 8080)
  MODELPLANE_BIND          address to listen on (default 127.0.0.1)
  MODELPLANE_CONFIG_JSON   the package's config.yaml as JSON (the standard library reads no
                           YAML, so the agent converts it); passed to the model as `config`
  MODELPLANE_SECRETS_JSON  {"name": "value"} of the secrets the package asked for
  MODELPLANE_SECRETS_DIR   a directory with the same secrets, one file each, named as the secret
  MODELPLANE_ENVIRONMENT   the environment this replica serves (production, staging, ...)
  MODELPLANE_CONTROL_TOKEN enables POST /_modelplane/reload for callers that send it in the
                           X-Modelplane-Control-Token header; without it the route is 404

Endpoints:
  GET  /healthz                   200 while the process runs (liveness)
  GET  /v1/models/model           200 once load() returned, 503 before, 500 if it raised;
                                  200 with "ready": false and "reload_error" after a failed
                                  reload (see below)
  POST /v1/models/model:predict   JSON in, predict(), JSON out
  POST /_modelplane/reload        reloads the model's code in this process (see below):
                                  200 {"status": "ready", "seconds": ...}, 500 {"error": ...}
                                  if the new code failed, 409 while a reload runs, 403 without
                                  the control token
  GET  /websocket                 a websocket (RFC 6455) handed to the model's `websocket`
                                  method, sync or async, as Truss does; 404 for a model
                                  without one (see below)
  (the config's health_path and predict_path are served as well)

Websockets: the server accepts the upgrade, then calls `websocket(ws)` on its own thread
(an async method on that thread's event loop). `ws` offers Truss's (Starlette's) calls:
receive_text, receive_bytes, receive_json, send_text, send_bytes, send_json, close(code,
reason), and accept (a no-op: the connection is accepted already); they are coroutines for an
async method and plain calls for a sync one. A receive raises WebSocketDisconnect (with .code)
once the client closed. Pings are answered; when the method returns, the websocket is closed
with 1000, or 1011 if it raised.

Reload: the server forgets every module loaded from the package directory (the module
directory, the bundled packages and the external package directories alike, so that edited
siblings are read again), re-imports the model's module, constructs a new instance of its
class and calls load(). The previous model serves until the new one is ready. If the new
code fails to import, construct or load, the previous model is dropped rather than left
serving code that no longer matches the files: predict answers 500 with "model reload failed:
<type>: <message>" and the health path answers 200 with that error, so the replica stays in
rotation and callers see why, until a reload succeeds. A failure of the first load is
different: the health path answers 500 and predict 503.

Signals: SIGTERM (or SIGINT) stops accepting connections, lets in-flight requests finish
(up to 30 s) and exits 0. SIGHUP starts the same reload in the background.
"""

import argparse
import asyncio
import base64
import datetime
import hashlib
import hmac
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import linecache
import os
import pathlib
import posixpath
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_HEALTH_PATH = "/v1/models/model"
DEFAULT_PREDICT_PATH = "/v1/models/model:predict"
LIVENESS_PATH = "/healthz"
RELOAD_PATH = "/_modelplane/reload"
CONTROL_TOKEN_ENV = "MODELPLANE_CONTROL_TOKEN"
CONTROL_TOKEN_HEADER = "X-Modelplane-Control-Token"
DRAIN_TIMEOUT_SECONDS = 30.0
WEBSOCKET_PATH = "/websocket"
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# The largest websocket message taken; a larger one closes the websocket with 1009.
WEBSOCKET_MAX_MESSAGE = 16 << 20

# Where the server writes, once the model has loaded, the top-level modules the load imported
# beyond the standard library's, as a JSON list: the agent pre-imports them in the fork server
# of the replica's environment (forkserver.py) for the next replica.
IMPORTS_REPORT_ENV = "MODELPLANE_IMPORTS_REPORT"
# What the bare interpreter has: the standard library's names where Python lists them (3.10+),
# else what is loaded before any model code runs.
BARE_MODULES = set(getattr(sys, "stdlib_module_names", ()) or
                   {n.partition(".")[0] for n in sys.modules}) | set(sys.builtin_module_names)

# No __pycache__ in the package: its directory may be read-only, and a cached .pyc whose
# source was patched within the same second at the same size would survive a reload.
sys.dont_write_bytecode = True

_out_lock = threading.Lock()


def log(line, stream=None):
    """Writes one line whole, even when many request threads log at once."""
    stream = stream or sys.stdout
    with _out_lock:
        stream.write(line + "\n")
        stream.flush()


def log_exception(context):
    log(context + "\n" + traceback.format_exc().rstrip(), sys.stderr)


def describe(exc):
    return "%s: %s" % (type(exc).__name__, exc)


def run_maybe_async(value):
    """Returns value, or what it resolves to when it is awaitable (async def methods)."""
    if inspect.isawaitable(value):
        async def wait():
            return await value

        # Each request thread gets its own short-lived event loop.
        return asyncio.run(wait())
    return value


def accepted_kwargs(cls, offered):
    """The keyword arguments of `offered` that cls's constructor takes (all, with **kwargs)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        # No signature to read: a class without __init__ takes nothing.
        return {} if cls.__init__ is object.__init__ else dict(offered)
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return dict(offered)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in offered.items() if k in names}


def read_config(package_dir):
    text = os.environ.get("MODELPLANE_CONFIG_JSON")
    if text:
        return json.loads(text)
    # Run by hand, without the agent: read config.yaml if PyYAML happens to be installed.
    path = os.path.join(package_dir, "config.yaml")
    try:
        import yaml  # noqa: optional, never required

        with open(path) as f:
            return yaml.safe_load(f) or {}
    except Exception as exc:  # noqa: any failure falls back to a minimal config
        log("MODELPLANE_CONFIG_JSON is not set and %s could not be read (%s); "
            "using a minimal config" % (path, describe(exc)), sys.stderr)
        return {"model_name": os.path.basename(os.path.abspath(package_dir))}


def config_path(config, key, default):
    """The relative path config[key] names, or default when the key is absent, null or empty.

    The Go side validates these paths; an odd value (a number, say) is used as its text, so
    that it shows in the load failure it causes rather than crashing the server."""
    value = config.get(key)
    if value is None or value == "":
        return default
    return value if isinstance(value, str) else str(value)


def predict_concurrency(config):
    """runtime.predict_concurrency: the most predict calls at once (Truss's default, 1)."""
    runtime = config.get("runtime")
    value = runtime.get("predict_concurrency") if isinstance(runtime, dict) else None
    if value is None:
        return 1
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        n = int(value)
        if n < 1:
            raise ValueError(value)
    except (TypeError, ValueError):
        log("runtime.predict_concurrency must be a positive integer, not %r; using 1" % (value,),
            sys.stderr)
        return 1
    return n


class Layout:
    """Where a Truss package keeps its parts, after the config's keys (Truss's defaults):
    model_module_dir, model_class_filename, model_class_name, data_dir,
    bundled_packages_dir and external_package_dirs."""

    def __init__(self, package_dir, config):
        self.package_dir = package_dir
        module_dir = config_path(config, "model_module_dir", "model")
        filename = config_path(config, "model_class_filename", "model.py")
        # The module file as the config names it, for messages: "src/my_model.py".
        self.module_file = posixpath.normpath(
            posixpath.join(module_dir.replace(os.sep, "/"), filename))
        self.module_dir = self._path(module_dir)
        self.module_path = os.path.join(self.module_dir, filename)
        stem = os.path.splitext(os.path.basename(filename))[0]
        self.module_name = stem or "model"
        name = config.get("model_class_name")
        self.class_name = "Model" if name is None or name == "" else str(name)
        self.data_dir = self._path(config_path(config, "data_dir", "data"))
        self.bundled_dir = self._path(config_path(config, "bundled_packages_dir", "packages"))
        self.external_dirs = self._external_dirs(config.get("external_package_dirs"))

    def _path(self, rel):
        return os.path.normpath(os.path.join(self.package_dir, rel))

    def _external_dirs(self, entries):
        """Entry i of external_package_dirs: .external/<i> when the packer put it there (a
        directory outside the package), else the entry itself when it lies inside."""
        if entries is None:
            return []
        if not isinstance(entries, list):
            entries = [entries]
        dirs = []
        for i, entry in enumerate(entries):
            packed = os.path.join(self.package_dir, ".external", str(i))
            if os.path.isdir(packed):
                dirs.append(packed)
                continue
            if isinstance(entry, str) and entry and not os.path.isabs(entry):
                path = self._path(entry)
                if path == self.package_dir or path.startswith(self.package_dir + os.sep):
                    dirs.append(path)
                    continue
            log("external_package_dirs[%d] (%r) is not in the package; it is not on sys.path"
                % (i, entry), sys.stderr)
        return dirs

    def code_dirs(self):
        """The directories the model's code imports from, first searched first."""
        return [self.module_dir, self.bundled_dir] + self.external_dirs


class ReloadBusy(Exception):
    """Another reload, or the first load, is still running."""


class ModelHost:
    """Owns the model object and its lifecycle: loading, failing, reloading."""

    def __init__(self, package_dir, config, secrets, environment):
        self.package_dir = os.path.abspath(package_dir)
        self.layout = Layout(self.package_dir, config)
        self.config = config
        self.secrets = secrets
        self.environment = environment
        self.model_name = config.get("model_name") or "model"
        self._lock = threading.Lock()
        # True while the first load or a reload builds: two builds at once would purge and
        # import modules under each other. It changes under _lock together with the state,
        # so a model shown ready can be reloaded at once.
        self._building = True
        self._model = None
        self._state = "loading"  # loading | ready | failed | reload_failed
        self._error = None

    def status(self):
        """Returns (state, error); error is the text predict and health report, or None."""
        with self._lock:
            return self._state, self._error

    def model(self):
        with self._lock:
            return self._model if self._state == "ready" else None

    def start_loading(self):
        threading.Thread(target=self._load, name="load", daemon=True).start()

    def _load(self):
        started = time.monotonic()
        try:
            model = self._build()
        except BaseException as exc:  # noqa: a model's failure must not kill the server
            log_exception("load() failed")
            with self._lock:
                self._state, self._error, self._building = "failed", describe(exc), False
            return
        # Before the model is ready: a replica stopped as soon as it is seen ready has reported.
        report = os.environ.get(IMPORTS_REPORT_ENV)
        if report:
            try:
                self._report_imports(report)
            except OSError as exc:
                log("writing the imported modules to %s: %s" % (report, exc), sys.stderr)
        with self._lock:
            self._model, self._state, self._error, self._building = model, "ready", None, False
        log("model %s loaded in %.1fs" % (self.model_name, time.monotonic() - started))

    def _report_imports(self, path):
        inside = self._inside_package()
        names = []
        for top in sorted({n.partition(".")[0] for n in list(sys.modules)}):
            mod = sys.modules.get(top)
            if mod is None or top in BARE_MODULES or top == "__main__":
                continue
            locations = [getattr(mod, "__file__", None)] + list(getattr(mod, "__path__", None) or [])
            if any(inside(p) for p in locations if isinstance(p, str)):
                continue  # the package's own code: read afresh by each replica
            names.append(top)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(names, f)
        os.replace(tmp, path)

    def reload(self):
        """Builds a new model from the code on disk and swaps it in once load() returned.

        Returns (error, seconds): error is None on success, else the text that predict and the
        health path report until a later reload succeeds. Raises ReloadBusy while another
        reload or the first load runs.
        """
        with self._lock:
            if self._building:
                raise ReloadBusy("a reload is already running")
            self._building = True
        started = time.monotonic()
        try:
            model = self._build()
        except BaseException as exc:  # noqa: a model's failure must not kill the server
            error = "model reload failed: %s" % describe(exc)
            log_exception(error)
            with self._lock:
                # The files on disk no longer hold the code that built the old model, so
                # serving it would answer with behaviour nobody can see or edit.
                self._model, self._state, self._error, self._building = None, "reload_failed", error, False
            return error, time.monotonic() - started
        with self._lock:
            self._model, self._state, self._error, self._building = model, "ready", None, False
        seconds = time.monotonic() - started
        log("model %s reloaded in %.1fs" % (self.model_name, seconds))
        return None, seconds

    def reload_in_background(self):
        """SIGHUP's reload: the same as the control route's, with the outcome in the log."""
        def run():
            try:
                self.reload()
            except ReloadBusy:
                log("a reload is already running; ignoring SIGHUP", sys.stderr)

        threading.Thread(target=run, name="reload", daemon=True).start()

    def _build(self):
        layout = self.layout
        module = self._import()
        cls = getattr(module, layout.class_name, None)
        if cls is None:
            raise AttributeError("%s defines no class %s" % (layout.module_file, layout.class_name))
        offered = {
            "config": self.config,
            "data_dir": pathlib.Path(layout.data_dir),
            "secrets": self.secrets,
            "environment": self.environment,
        }
        model = cls(**accepted_kwargs(cls, offered))
        load = getattr(model, "load", None)
        if callable(load):
            run_maybe_async(load())
        return model

    def _import(self):
        layout = self.layout
        if not os.path.isfile(layout.module_path):
            raise FileNotFoundError("%s not found in %s" % (layout.module_file, self.package_dir))
        # The model's module may import its siblings, the bundled packages and the external
        # package directories, as in a Truss.
        for extra in reversed(layout.code_dirs()):
            if os.path.isdir(extra) and extra not in sys.path:
                sys.path.insert(0, extra)
        self._forget_package_modules()
        spec = importlib.util.spec_from_file_location(layout.module_name, layout.module_path)
        if spec is None or spec.loader is None:
            raise ImportError("%s cannot be imported as a Python module" % layout.module_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[layout.module_name] = module
        spec.loader.exec_module(module)
        return module

    def _inside_package(self):
        """Answers a function telling whether a path lies in the package's code."""
        roots = set()
        for d in [self.package_dir] + self.layout.code_dirs():
            roots.update((os.path.abspath(d) + os.sep, os.path.realpath(d) + os.sep))

        def inside(path):
            return any(p.startswith(r) for p in (os.path.abspath(path), os.path.realpath(path))
                       for r in roots)

        return inside

    def _forget_package_modules(self):
        """Drops every module loaded from the package directory, so that the next import
        reads the files as they are now: the module's siblings, the bundled packages and the
        external package directories change with it."""
        inside = self._inside_package()
        for name, mod in list(sys.modules.items()):
            if name == "__main__":
                continue  # this server, wherever its file lies
            origin = getattr(mod, "__file__", None)
            if origin and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
                # A compiled extension cannot be initialised twice in one process (numpy
                # refuses to); the Python code around it is read again all the same.
                continue
            # Namespace packages (a directory without __init__.py) have no __file__.
            locations = [origin] + list(getattr(mod, "__path__", None) or [])
            if any(inside(p) for p in locations if isinstance(p, str)):
                del sys.modules[name]
        # The import system caches directory listings; a file added since the last import
        # within the same mtime tick would not be found.
        importlib.invalidate_caches()
        # Tracebacks of the new code should quote its lines, not the old ones.
        linecache.checkcache()


class WebSocketDisconnect(Exception):
    """Raised by a receive once the websocket is closed; code is the close code."""

    def __init__(self, code=1000, reason=""):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class _WebSocketError(Exception):
    """A protocol error of the client: the websocket is closed with code."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SyncWebSocket:
    """One accepted websocket (RFC 6455, server side) over the handler's connection."""

    OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

    def __init__(self, rfile, wfile, path, headers):
        self._rfile = rfile
        self._wfile = wfile
        self._send_lock = threading.Lock()
        self._close_sent = False
        self._closed = None  # the WebSocketDisconnect every later receive raises
        self.url_path = path
        self.headers = headers

    def accept(self, *args, **kwargs):
        pass  # accepted before the model is called

    def receive(self):
        """Returns the next message as {"type": "websocket.receive", "text" or "bytes": ...}."""
        if self._closed is not None:
            raise self._closed
        try:
            opcode, data = self._read_message()
        except _WebSocketError as exc:
            self._send_close(exc.code, exc.reason)
            self._closed = WebSocketDisconnect(exc.code, exc.reason)
            raise self._closed
        except (OSError, ValueError):
            self._closed = WebSocketDisconnect(1006, "connection lost")
            raise self._closed
        if opcode == self.OP_TEXT:
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": data}

    def receive_text(self):
        message = self.receive()
        if "text" in message:
            return message["text"]
        return message["bytes"].decode("utf-8")

    def receive_bytes(self):
        message = self.receive()
        if "bytes" in message:
            return message["bytes"]
        return message["text"].encode("utf-8")

    def receive_json(self):
        return json.loads(self.receive_text())

    def send_text(self, data):
        self._send_frame(self.OP_TEXT, data.encode("utf-8"))

    def send_bytes(self, data):
        self._send_frame(self.OP_BINARY, bytes(data))

    def send_json(self, data):
        self.send_text(json.dumps(data))

    def close(self, code=1000, reason=""):
        self._send_close(code, reason)

    @property
    def closed(self):
        return self._close_sent or self._closed is not None

    def _send_frame(self, opcode, payload):
        if self._close_sent:
            raise WebSocketDisconnect(1000, "websocket closed")
        self._write(opcode, payload)

    def _write(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        with self._send_lock:
            self._wfile.write(head + payload)
            self._wfile.flush()

    def _send_close(self, code, reason=""):
        if self._close_sent:
            return
        self._close_sent = True
        payload = b"" if code in (1005, 1006) else struct.pack("!H", code) + reason.encode("utf-8")[:123]
        try:
            self._write(self.OP_CLOSE, payload)
        except OSError:
            pass

    def _read_exact(self, n):
        data = self._rfile.read(n) if n else b""
        if len(data) != n:
            raise ConnectionResetError("websocket connection closed")
        return data

    def _read_frame(self):
        b0, b1 = self._read_exact(2)
        fin, opcode, masked, n = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        if b0 & 0x70:
            raise _WebSocketError(1002, "reserved bits set without an extension")
        if not masked:
            raise _WebSocketError(1002, "client frames must be masked")
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8))[0]
        if opcode >= 0x8 and (n > 125 or not fin):
            raise _WebSocketError(1002, "invalid control frame")
        if n > WEBSOCKET_MAX_MESSAGE:
            raise _WebSocketError(1009, "message too big")
        mask = self._read_exact(4)
        payload = bytearray(self._read_exact(n))
        for i in range(n):
            payload[i] ^= mask[i & 3]
        return bool(fin), opcode, bytes(payload)

    def _read_message(self):
        opcode, parts, size = None, [], 0
        while True:
            fin, op, payload = self._read_frame()
            if op == self.OP_PING:
                self._write(self.OP_PONG, payload)
                continue
            if op == self.OP_PONG:
                continue
            if op == self.OP_CLOSE:
                code, reason = 1005, ""
                if len(payload) == 1:
                    raise _WebSocketError(1002, "invalid close frame")
                if len(payload) >= 2:
                    code = struct.unpack("!H", payload[:2])[0]
                    reason = payload[2:].decode("utf-8", "replace")
                # Answer the client's close with the same code, then report it.
                self._send_close(code if code != 1005 else 1000)
                self._closed = WebSocketDisconnect(code, reason)
                raise self._closed
            if op in (self.OP_TEXT, self.OP_BINARY):
                if opcode is not None:
                    raise _WebSocketError(1002, "new message inside a fragmented one")
                opcode = op
            elif op == self.OP_CONT:
                if opcode is None:
                    raise _WebSocketError(1002, "continuation without a message")
            else:
                raise _WebSocketError(1002, "unknown opcode %d" % op)
            size += len(payload)
            if size > WEBSOCKET_MAX_MESSAGE:
                raise _WebSocketError(1009, "message too big")
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                if opcode == self.OP_TEXT:
                    try:
                        return opcode, data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _WebSocketError(1007, "text message is not UTF-8")
                return opcode, data


class AsyncWebSocket:
    """SyncWebSocket's calls as coroutines, for an async `websocket` method. Each blocking call
    runs on a worker thread, so that a model may send while it waits to receive."""

    def __init__(self, ws):
        self._ws = ws
        self.url_path = ws.url_path
        self.headers = ws.headers

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def accept(self, *args, **kwargs):
        pass

    async def receive(self):
        return await self._run(self._ws.receive)

    async def receive_text(self):
        return await self._run(self._ws.receive_text)

    async def receive_bytes(self):
        return await self._run(self._ws.receive_bytes)

    async def receive_json(self):
        return await self._run(self._ws.receive_json)

    async def send_text(self, data):
        await self._run(self._ws.send_text, data)

    async def send_bytes(self, data):
        await self._run(self._ws.send_bytes, data)

    async def send_json(self, data):
        await self._run(self._ws.send_json, data)

    async def close(self, code=1000, reason=""):
        await self._run(self._ws.close, code, reason)


class BadRequest(Exception):
    pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections in a burst from the gateway,
    # and a dropped SYN costs the client a one-second retransmit.
    request_queue_size = 128

    def __init__(self, address, host, health_paths, predict_paths, control_token=None,
                 predict_concurrency=1):
        super().__init__(address, Handler)
        self.host = host
        # runtime.predict_concurrency: a predict waits here for its turn in the model.
        self.predict_slots = threading.BoundedSemaphore(predict_concurrency)
        self.health_paths = health_paths
        self.predict_paths = predict_paths
        # None: the control routes do not exist.
        self.control_token = control_token or None
        self.draining = False
        self._in_flight = 0
        self._idle = threading.Condition()

    def request_started(self):
        with self._idle:
            self._in_flight += 1

    def request_finished(self):
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout):
        """Waits until no request is in flight; False if timeout passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def in_flight(self):
        with self._idle:
            return self._in_flight


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections from the gateway open between requests.
    protocol_version = "HTTP/1.1"
    server_version = "modelplane-python/1"
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for
    # the client's delayed ACK of the headers, 40 ms on every prediction.
    disable_nagle_algorithm = True

    def log_request(self, code="-", size="-"):
        pass  # one line per request is written by _serve, with the duration

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)

    def do_GET(self):
        self._serve(self._get)

    def do_POST(self):
        self._serve(self._post)

    def _serve(self, route):
        self.server.request_started()
        self._status, self._sent = None, 0
        started = time.monotonic()
        try:
            route(self.path.split("?", 1)[0])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server.request_finished()
            log('%s %s "%s %s" %s %d %.1fms' % (
                datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                self.client_address[0], self.command, self.path, self._status or "-",
                self._sent, (time.monotonic() - started) * 1000))

    def _get(self, path):
        if path == LIVENESS_PATH:
            return self._json(200, {"status": "ok"})
        if path in self.server.health_paths:
            return self._health()
        if path in self.server.predict_paths:
            return self._json(405, {"error": "use POST"})
        if path == WEBSOCKET_PATH:
            return self._websocket()
        self._json(404, {"error": "not found: %s" % path})

    def _post(self, path):
        if path in self.server.predict_paths:
            return self._predict()
        try:
            self._read_body()  # keep the connection usable for the next request
        except BadRequest:
            self.close_connection = True
        if path == RELOAD_PATH and self.server.control_token is not None:
            return self._reload()
        self._json(404, {"error": "not found: %s" % path})

    def _reload(self):
        # Anything that reaches the port could otherwise swap the model's code for what is
        # on disk; the agent that started this process holds the token.
        sent = (self.headers.get(CONTROL_TOKEN_HEADER) or "").encode("utf-8", "surrogateescape")
        want = self.server.control_token.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(sent, want):
            return self._json(403, {"error": "missing or wrong %s header" % CONTROL_TOKEN_HEADER})
        try:
            error, seconds = self.server.host.reload()
        except ReloadBusy as exc:
            return self._json(409, {"error": str(exc)})
        if error:
            return self._json(500, {"error": error})
        self._json(200, {"status": "ready", "seconds": round(seconds, 3)})

    def _websocket(self):
        model = self.server.host.model()
        if model is None:
            state, error = self.server.host.status()
            return self._json(503 if state != "reload_failed" else 500,
                              {"error": error or "model is not ready"})
        handler = getattr(model, "websocket", None)
        if handler is None:
            return self._json(404, {"error": "this model has no websocket method"})
        def tokens(name):
            return {t.strip().lower() for t in (self.headers.get(name) or "").split(",")}
        key = self.headers.get("Sec-WebSocket-Key") or ""
        if "upgrade" not in tokens("Connection") or "websocket" not in tokens("Upgrade") or not key:
            self.send_response(426)
            self.send_header("Upgrade", "websocket")
            body = json.dumps({"error": "websocket needs a websocket upgrade request"}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self._end_headers()
            self.wfile.write(body)
            return
        if self.headers.get("Sec-WebSocket-Version") != "13":
            self.send_response(426)
            self.send_header("Sec-WebSocket-Version", "13")
            self.send_header("Content-Length", "0")
            self._end_headers()
            return
        accept = base64.b64encode(hashlib.sha1(key.strip().encode() + WEBSOCKET_GUID).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True  # the connection is the websocket's from here on
        ws = SyncWebSocket(self.rfile, self.wfile, self.path, self.headers)
        code, reason = 1000, ""
        try:
            if inspect.iscoroutinefunction(handler):
                asyncio.run(handler(AsyncWebSocket(ws)))
            else:
                run_maybe_async(handler(ws))
        except WebSocketDisconnect:
            pass  # the client closed; its close was answered
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception:  # noqa: the model's error closes its websocket, not the server
            log_exception("websocket failed")
            code, reason = 1011, "model error"
        ws.close(code, reason)
        # The client answers the close; its frame is read so that the closing is clean.
        try:
            self.connection.settimeout(2)
            while True:
                ws.receive()
        except (WebSocketDisconnect, OSError, ValueError):
            pass

    def _health(self):
        host = self.server.host
        state, error = host.status()
        body = {"model_name": host.model_name, "ready": state == "ready"}
        if state == "reload_failed":
            body.update(error=error, reload_error=error)
        if self.server.draining:
            body.update(ready=False, error="shutting down")
            return self._json(503, body)
        if state == "failed":
            body["error"] = error
            return self._json(500, body)
        if state == "reload_failed":
            # 200 keeps the replica in rotation, so that callers of predict get the error
            # rather than no answer while the code is being fixed.
            return self._json(200, body)
        self._json(200 if state == "ready" else 503, body)

    def _predict(self):
        host = self.server.host
        try:
            raw = self._read_body()
        except BadRequest as exc:
            self.close_connection = True  # the rest of the stream cannot be trusted
            return self._json(400, {"error": str(exc)})
        model = host.model()
        if model is None:
            state, error = host.status()
            if state == "reload_failed":
                return self._json(500, {"error": error})
            message = "model is not ready" if state != "failed" else "model failed to load: %s" % error
            return self._json(503, {"error": message})
        try:
            model_input = json.loads(raw)
        except ValueError as exc:
            return self._json(400, {"error": "invalid JSON body: %s" % exc})
        slots = self.server.predict_slots
        slots.acquire()
        try:
            try:
                result = self._call(model, model_input)
                if inspect.isgenerator(result) or inspect.isasyncgen(result):
                    # A stream runs the model's code as it is read: it keeps its slot to the end.
                    return self._stream(result)
                body = json.dumps(result).encode()
            except Exception as exc:  # noqa: a model error is the caller's 500, not ours
                log_exception("predict failed")
                return self._json(500, {"error": describe(exc)})
        finally:
            slots.release()
        self._send(200, "application/json", body)

    @staticmethod
    def _call(model, model_input):
        """Truss's pipeline: preprocess and postprocess when the model defines them."""
        for step in ("preprocess", "predict", "postprocess"):
            fn = getattr(model, step, None)
            if fn is None:
                if step == "predict":
                    raise AttributeError("%s has no predict method" % type(model).__name__)
                continue
            model_input = fn(model_input)
            if not (inspect.isgenerator(model_input) or inspect.isasyncgen(model_input)):
                model_input = run_maybe_async(model_input)
            if step == "predict" and (inspect.isgenerator(model_input) or inspect.isasyncgen(model_input)):
                return model_input  # a stream skips postprocess
        return model_input

    def _stream(self, chunks):
        """Sends what a generator yields as it comes, in HTTP/1.1 chunks."""
        accept = self.headers.get("Accept", "")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if "text/event-stream" in accept
                         else "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self._end_headers()
        try:
            for chunk in self._iterate(chunks):
                if isinstance(chunk, str):
                    chunk = chunk.encode()
                elif not isinstance(chunk, (bytes, bytearray)):
                    chunk = (json.dumps(chunk) + "\n").encode()
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    self._sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:  # noqa: headers are gone; all we can do is cut the stream
            log_exception("predict stream failed")
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _iterate(chunks):
        if inspect.isgenerator(chunks):
            yield from chunks
            return
        loop = asyncio.new_event_loop()
        try:
            while True:
                try:
                    yield loop.run_until_complete(chunks.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.close()

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequest("invalid Content-Length")
        if length < 0:
            raise BadRequest("invalid Content-Length")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self):
        body = bytearray()
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise BadRequest("invalid chunked body")
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline(65537)

    def _json(self, status, obj):
        self._send(status, "application/json", json.dumps(obj).encode())

    def _send(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._end_headers()
        self.wfile.write(body)
        self._sent = len(body)

    def _end_headers(self):
        # While draining, close each connection after its request so the process can exit.
        if self.server.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()


def main(argv=None):
    parser = argparse.ArgumentParser(description="modelplane python model server")
    parser.add_argument("--package", required=True, help="the unpacked model package directory")
    args = parser.parse_args(argv)

    config = read_config(args.package)
    secrets = json.loads(os.environ.get("MODELPLANE_SECRETS_JSON") or "{}")
    environment = {"name": os.environ.get("MODELPLANE_ENVIRONMENT") or None}
    host = ModelHost(args.package, config, secrets, environment)

    health_paths = {DEFAULT_HEALTH_PATH, config.get("health_path") or DEFAULT_HEALTH_PATH}
    predict_paths = {DEFAULT_PREDICT_PATH, config.get("predict_path") or DEFAULT_PREDICT_PATH}
    bind = os.environ.get("MODELPLANE_BIND") or "127.0.0.1"
    port = int(os.environ.get("PORT") or 8080)
    if ":" in bind:
        Server.address_family = socket.AF_INET6
    server = Server((bind, port), host, health_paths, predict_paths,
                    control_token=os.environ.get(CONTROL_TOKEN_ENV),
                    predict_concurrency=predict_concurrency(config))

    def stop(signum, _frame):
        if server.draining:
            return
        server.draining = True
        log("received %s: draining %d in-flight request(s)" % (
            signal.Signals(signum).name, server.in_flight()))
        # shutdown() waits for serve_forever, which runs on this (the main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: host.reload_in_background())

    host.start_loading()
    log("serving model %s from %s on %s:%d" % (host.model_name, host.package_dir, bind, port))
    server.serve_forever(poll_interval=0.1)
    server.server_close()  # stop accepting: new connections are refused from here on
    # A connection accepted just before shutdown may not have counted itself yet.
    time.sleep(0.05)
    if server.wait_idle(DRAIN_TIMEOUT_SECONDS):
        log("drained; exiting")
        return 0
    log("drain timeout: %d request(s) still in flight; exiting" % server.in_flight(), sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads still inside predict() would block an orderly interpreter exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
