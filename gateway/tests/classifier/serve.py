#!/usr/bin/env python3
"""A real classifier for Parley's moderation tests: alt-profanity-check (its model ships in the
wheel, English profanity only) behind the HTTP interface the gateway calls.

POST any path with {"text": "..."} -> 200 {"score": <0..1>}; anything else -> 400.
Listens on 127.0.0.1 on a free port and prints the port on its first line of output.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from profanity_check import predict_prob

MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        try:
            n = int(self.headers.get("Content-Length", "0"))
            if n > MAX_BODY:
                raise ValueError("body too large")
            text = json.loads(self.rfile.read(n))["text"]
            if not isinstance(text, str):
                raise ValueError("text must be a string")
        except (ValueError, KeyError, TypeError) as e:
            return self.reply(400, {"error": str(e)})
        self.reply(200, {"score": float(predict_prob([text])[0])})

    def reply(self, status, body):
        out = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A caller that gave up (its timeout) closes the connection: not an error here.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main():
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
