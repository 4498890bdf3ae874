#!/usr/bin/env python3
"""A webhook receiver for modelplane's async requests: it checks each delivery's signature
with the workspace's webhook secret and prints one line per delivery.

    python3 examples/webhook-receiver/receiver.py [--port 9000] [--secret-file .modelplane/webhook-secret]

The signature is X-Modelplane-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">, with
<timestamp> from X-Modelplane-Timestamp (Unix seconds). Deliveries older than five minutes
are refused, so a captured one cannot be replayed later.
"""
import argparse
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

TOLERANCE_SECONDS = 300


def verify(secret: bytes, timestamp: str, signature: str, body: bytes) -> str:
    """Returns why the delivery is refused, or an empty string when it is genuine."""
    try:
        ts = int(timestamp)
    except ValueError:
        return "X-Modelplane-Timestamp is not a number"
    if abs(time.time() - ts) > TOLERANCE_SECONDS:
        return "the timestamp is more than five minutes away"
    want = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    for part in signature.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(value, want):
            return ""
    return "the signature does not match"


def handler(secret: bytes):
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            refused = verify(secret, self.headers.get("X-Modelplane-Timestamp", ""),
                             self.headers.get("X-Modelplane-Signature", ""), body)
            if refused:
                print(f"REFUSED {refused}", flush=True)
                self.send_response(401)
                self.end_headers()
                return
            payload = json.loads(body)
            print(f"signed delivery {self.headers.get('X-Modelplane-Delivery-Id')}: request "
                  f"{payload['request_id']} data={json.dumps(payload['data'])} "
                  f"errors={json.dumps(payload['errors'])}", flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    return Receiver


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--secret-file", default=".modelplane/webhook-secret")
    args = p.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().strip()
    print(f"listening on http://127.0.0.1:{args.port}/", flush=True)
    HTTPServer(("127.0.0.1", args.port), handler(secret)).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
