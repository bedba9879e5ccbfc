"""A small service in Python that serves a users API under /v1.0, as Microsoft Graph does:
the upstream the client tests put batch-proxy in front of. Prints its port, then serves.

    GET  /v1.0/users/{id}  200 {"id", "name"}, or 404 {"error": {...}}
    POST /v1.0/users       201 {"id", "name"} with Location, or 422 without a name
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USERS = {1: {"id": 1, "name": "First"}}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, extra=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        prefix = "/v1.0/users/"
        if self.path.startswith(prefix) and self.path[len(prefix):].isdigit():
            with LOCK:
                user = USERS.get(int(self.path[len(prefix):]))
            if user:
                return self.reply(200, user)
        self.reply(404, {"error": {"code": "NotFound", "message": self.path}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1.0/users":
            return self.reply(404, {"error": {"code": "NotFound", "message": self.path}})
        if not body.get("name"):
            return self.reply(422, {"error": {"code": "Invalid", "message": "name is required"}})
        with LOCK:
            user = {"id": max(USERS) + 1, "name": body["name"]}
            USERS[user["id"]] = user
        self.reply(201, user, [("Location", f"/v1.0/users/{user['id']}")])


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
