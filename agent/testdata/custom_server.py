"""A small custom model server for the agent's docker_server tests.

It listens on the port given as its first argument (or PORT), on the address given as its
second (default: every address). GET /ready and GET /live answer
200 until POST /unready or POST /break makes them fail; POST /predict answers the request
body with the server's pid; /websocket-path answers where it was reached. POST /privileges
answers what the server may do: its effective capabilities and no_new_privs from
/proc/self/status, and whether it could chown a file of its own to another user.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"ready": True, "live": True}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def privileges(self):
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("CapEff", "NoNewPrivs"):
                    out[key] = value.strip()
        path = "/tmp/chown-probe-%d" % os.getpid()
        with open(path, "w") as f:
            f.write("x")
        try:
            os.chown(path, 4321, 4321)
            out["chown"] = "ok"
        except OSError as e:
            out["chown"] = e.strerror
        finally:
            os.remove(path)
        return out

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/ready":
            self.answer(200 if state["ready"] else 503, {"ready": state["ready"]})
        elif self.path == "/live":
            self.answer(200 if state["live"] else 500, {"live": state["live"]})
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path == "/break":
            state["live"] = False
            self.answer(200, {})
        elif self.path == "/unready":
            state["ready"] = False
            self.answer(200, {})
        elif self.path == "/privileges":
            self.answer(200, self.privileges())
        elif self.path == "/predict":
            self.answer(200, {"pid": os.getpid(), "input": json.loads(body or b"null"),
                              "port": self.server.server_address[1], "user": os.getuid()})
        else:
            self.answer(404, {"error": "not found"})


port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ["PORT"])
host = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
ThreadingHTTPServer((host, port), Handler).serve_forever()
