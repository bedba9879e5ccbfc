"""A small legacy service for the proxy tests: plain Python, standard library only.

Listens on 127.0.0.1 on a free port and prints the port on its first line.
  GET  /whoami        -> the identity headers it received, as JSON
  POST /items         -> 201 with the item and its new id
  GET  /items/<id>    -> 200, or 404 {"error": "not found"}
  GET  /plain         -> text
  GET  /wait          -> prints "waiting", then answers once /release is called
  POST /wait          -> the same (a write that waits)
  GET  /release       -> lets every /wait answer
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ITEMS = {}
LOCK = threading.Lock()
GATE = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json", extra=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/whoami":
            seen = {h: self.headers.get_all(h) for h in ("authorization", "cookie", "x-forwarded-for", "host", "x-custom", "x-api-key", "x-tenant", "x-correlation-id")}
            self.reply(200, seen)
        elif self.path == "/wait":
            print("waiting", flush=True)
            GATE.wait()
            self.reply(200, b"released", "text/plain")
        elif self.path == "/release":
            GATE.set()
            self.reply(200, b"ok", "text/plain")
        elif self.path == "/plain":
            self.reply(200, b"legacy says hi", "text/plain")
        elif self.path == "/big":
            self.reply(200, b"x" * 500_000, "text/plain")
        elif self.path.startswith("/items/"):
            with LOCK:
                item = ITEMS.get(self.path[len("/items/"):])
            if item is None:
                self.reply(404, {"error": "not found"})
            else:
                self.reply(200, item)
        else:
            self.reply(404, {"error": "no route"})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/wait":
            print("waiting", flush=True)
            GATE.wait()
            self.reply(200, b"released", "text/plain")
        elif self.path == "/items":
            try:
                item = json.loads(raw or b"{}")
            except ValueError:
                self.reply(422, {"error": "not JSON"})
                return
            with LOCK:
                item["id"] = len(ITEMS) + 1
                ITEMS[str(item["id"])] = item
            self.reply(201, item, extra=[("location", "/items/%d" % item["id"])])
        else:
            self.reply(404, {"error": "no route"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
