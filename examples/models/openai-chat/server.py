"""A small OpenAI-style chat completions server, Python standard library only.

It "generates" by echoing the last user message back word by word:

  POST /v1/chat/completions  {"model", "messages", "stream", "max_tokens"}
      a chat.completion object, or with "stream": true Server-Sent Events, one
      chat.completion.chunk per token, ending with `data: [DONE]`
  GET  /v1/models            the one model
  GET  /health               200 once the server listens

It listens on 127.0.0.1 (or $HOST) at --port, which config.yaml's start_command sets to the
agent's $PORT (8000 when run alone).
TOKEN_DELAY (seconds, default 0.05) is the pause between streamed tokens.
"""
import argparse
import json
import os
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "openai-chat-echo"
TOKEN_DELAY = float(os.environ.get("TOKEN_DELAY", "0.05"))


def reply_tokens(messages, max_tokens):
    """The words of the last user message, each but the first with its leading space."""
    text = ""
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
    words = text.split() or ["..."]
    if max_tokens is not None:
        words = words[:max(int(max_tokens), 0)]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-chat/1"

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args), flush=True)

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, message):
        self.send_json(code, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self):
        if self.path == "/health":
            self.send_json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "modelplane"}]})
        else:
            self.error(404, "no route " + self.path)

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            self.error(404, "no route " + self.path)
            return
        try:
            n = int(self.headers.get("Content-Length") or 0)
            req = json.loads(self.rfile.read(n) or b"{}")
            messages = req["messages"]
            if not isinstance(messages, list):
                raise ValueError("messages must be a list")
        except (ValueError, KeyError, TypeError) as e:
            self.error(400, "bad request: %s" % e)
            return
        model = req.get("model") or MODEL
        tokens = reply_tokens(messages, req.get("max_tokens"))
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        if req.get("stream"):
            self.stream(cid, created, model, tokens)
            return
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
        self.send_json(200, {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "".join(tokens)}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                      "total_tokens": prompt_tokens + len(tokens)},
        })

    def stream(self, cid, created, model, tokens):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(data):
            body = ("data: %s\n\n" % data).encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
            self.wfile.flush()

        def chunk(delta, finish=None):
            return json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        event(chunk({"role": "assistant", "content": ""}))
        for tok in tokens:
            time.sleep(TOKEN_DELAY)
            event(chunk({"content": tok}))
        event(chunk({}, "stop"))
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    port = parser.parse_args().port
    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), port), Handler)
    server.daemon_threads = True
    print("openai-chat listening on", port, flush=True)
    server.serve_forever()
