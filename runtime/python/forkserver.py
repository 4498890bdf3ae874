"""modelplane's fork server: a Python interpreter of one environment that has imported a
package's heavy modules once, and starts model servers by forking itself.

    python forkserver.py --socket PATH --imports FILE

It imports each module named in FILE (a JSON list; a module that fails to import is logged
and left out), then listens on the Unix socket PATH. It holds no secret: what it receives
before a fork is two file descriptors and nothing else.

One connection starts one replica:

1. the agent sends {"start": true} with the replica's stdout and stderr descriptors
   (SCM_RIGHTS); the server forks and answers {"pid": N};
2. the child, alone from here, reads {"argv", "cwd", "env"} from the same connection, becomes
   the replica (its own session, its working directory, exactly that environment, the two
   descriptors as fd 1 and 2, /dev/null as fd 0), answers {"started": true} (or
   {"error": "..."} and exits 1) and runs argv[0] as __main__ with sys.argv = argv;
3. when the child exits, the server answers {"wait_status": S}, the raw status of
   waitpid(2), and closes the connection.

End of input on its stdin (the agent is gone, or retired this server) stops the accepting;
the server goes on reaping its children and exits once none is left.

    python - --spare FD --imports-json LIST    (this file on standard input)

A warm spare: a process the agent starts as a replica user of its own, before it knows its
replica, on a root agent, where a fork server would run model code as the agent's user. It
imports the modules of the JSON LIST, answers {"ready": true} on the Unix socket FD (one of a
pair the agent holds the other end of), and waits for one start request, the same as step 1
above: it answers {"pid": its own} and becomes the replica itself, as a forked child does
(step 2). The agent, its parent, reaps it. End of input on FD before a request (the agent is
gone, or stopped it) ends it.
"""

import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback

# The marker the replica's environment block carries in place of its replica ID, which the
# agent finds replicas by in /proc/PID/environ: see own_environ_block.
REPLICA_ID_ENV = "MODELPLANE_REPLICA_ID"


def log(line):
    sys.stderr.write("forkserver: %s\n" % line)
    sys.stderr.flush()


def send(conn, msg):
    try:
        conn.sendall((json.dumps(msg) + "\n").encode())
    except OSError:
        pass  # the agent is gone; the child's end is reported to nobody


def warm(imports):
    started = time.monotonic()
    done = []
    for name in imports:
        try:
            __import__(name)
            done.append(name)
        except BaseException as exc:  # noqa: a module of the package's must not stop the server
            log("import %s failed, left out: %s: %s" % (name, type(exc).__name__, exc))
    log("imported %s in %.1fs" % (", ".join(done) or "nothing", time.monotonic() - started))


def own_environ_block(replica_id):
    """Writes replica_id over the placeholder value of REPLICA_ID_ENV in this process's
    original environment block, the one /proc/self/environ shows: a forked process cannot
    change that block otherwise, and the agent finds its replicas by it after a restart."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    start, end = int(fields[47]), int(fields[48])  # env_start and env_end, fields 50 and 51
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        block = mem.read(end - start)
        key = (REPLICA_ID_ENV + "=").encode()
        if block.startswith(key):
            at = 0
        else:
            at = block.find(b"\0" + key) + 1
            if at == 0:
                raise RuntimeError("no %s placeholder in the environment block" % REPLICA_ID_ENV)
        value_at = at + len(key)
        room = block.index(b"\0", value_at) - value_at
        value = replica_id.encode()
        if len(value) > room:
            raise RuntimeError("replica ID longer than the placeholder")
        mem.seek(start + value_at)
        mem.write(value + b"\0" * (room - len(value)))


def become_replica(conn, out_fd, err_fd, listener):
    """Runs in the forked child, or in a spare (no listener); never returns."""
    code = 1
    try:
        os.setsid()
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        if listener is not None:
            listener.close()
        reader = conn.makefile("rb")
        spec = json.loads(reader.readline() or b"null")
        reader.close()
        if not isinstance(spec, dict):
            raise RuntimeError("no replica spec")
        os.chdir(spec["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        # Exactly the replica's environment: nothing of the fork server's is kept.
        os.environ.clear()
        os.environ.update(spec["env"])
        own_environ_block(spec["env"].get(REPLICA_ID_ENV, ""))
        send(conn, {"started": True})
        fd = conn.detach()
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        try:
            os.close(fd)
        except OSError:
            pass
    except BaseException as exc:  # noqa: whatever went wrong is the agent's to hear
        send(conn, {"error": "%s: %s" % (type(exc).__name__, exc)})
        os._exit(1)
    code = run_main(spec["argv"])
    os._exit(code)


def run_main(argv):
    """Runs argv[0] as `python -u argv...` would, and answers the exit code."""
    import atexit
    import io
    import runpy

    # -u: the log lines reach the files as they are written.
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True, line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True,
                                  line_buffering=True, errors="backslashreplace")
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    code = 0
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            sys.stderr.write("%s\n" % exc.code)
            code = 1
    except BaseException:  # noqa: as the interpreter would, print it and exit 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: exiting all the same
        pass
    return code


def serve(path):
    sel = selectors.DefaultSelector()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: None)

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)  # mode 0600: only the agent's user connects
    finally:
        os.umask(old)
    listener.listen(64)
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "signal")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    log("ready on %s" % path)

    children = {}  # pid -> connection
    accepting = True
    while accepting or children:
        for key, _ in sel.select(timeout=1.0):
            if key.data == "accept":
                conn, _ = listener.accept()
                try:
                    start(conn, listener, children)
                except Exception as exc:  # noqa: one bad request must not stop the server
                    log("start failed: %s" % exc)
                    send(conn, {"error": str(exc)})
                    conn.close()
            elif key.data == "signal":
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            elif key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 512):
                    accepting = False
                    sel.unregister(sys.stdin.fileno())
                    sel.unregister(listener)
                    listener.close()
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
                    log("retired; %d replica(s) still running" % len(children))
        reap(children)
    log("exiting")


def start(conn, listener, children):
    conn.settimeout(10)  # a request comes at once or not at all
    msg, fds, _, _ = socket.recv_fds(conn, 4096, 2)
    try:
        if len(fds) != 2 or not msg.startswith(b"{"):
            raise RuntimeError("want a start request with two descriptors")
        pid = os.fork()
        if pid == 0:
            become_replica(conn, fds[0], fds[1], listener)
        children[pid] = conn
        send(conn, {"pid": pid})
    finally:
        for fd in fds:
            os.close(fd)


def spare(fd):
    """Waits, warm, for the one replica this process becomes; returns only when none comes."""
    conn = socket.socket(fileno=fd)
    send(conn, {"ready": True})
    log("spare %d ready" % os.getpid())
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 4096, 2)
    except OSError as exc:
        log("spare: %s" % exc)
        return
    if not msg:
        return  # the agent is gone, or stopped this spare
    if len(fds) != 2 or not msg.startswith(b"{"):
        send(conn, {"error": "want a start request with two descriptors"})
        for fd in fds:
            os.close(fd)
        return
    send(conn, {"pid": os.getpid()})
    become_replica(conn, fds[0], fds[1], None)


def reap(children):
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            send(conn, {"wait_status": status})
            conn.close()


def main():
    # As server.py: no __pycache__ written into an environment replicas share.
    sys.dont_write_bytecode = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = sys.argv[1:]
    opts = dict(zip(args[::2], args[1::2]))
    if "--spare" in opts:
        imports = json.loads(opts["--imports-json"])
        warm([m for m in imports or [] if isinstance(m, str)])
        spare(int(opts["--spare"]))
        return
    with open(opts["--imports"]) as f:
        imports = json.load(f)
    warm([m for m in imports or [] if isinstance(m, str)])
    serve(opts["--socket"])


if __name__ == "__main__":
    main()
