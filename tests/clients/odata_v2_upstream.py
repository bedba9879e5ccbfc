"""A small OData V2 service in Python, as SAP Gateway serves one: the upstream the pyodata
tests put batch-proxy in front of. Prints its port, then serves, under the service root
/sap/opu/odata/sap/DEMO_SRV/:

    GET  $metadata  200 EDMX (V2): entity type User (key ID Edm.Int32, Name), set Users
    GET  Users(ID)  200 {"d": {"__metadata", "ID", "Name"}}, or 404 with an OData V2 error
    GET  Users      200 {"d": {"results": [...]}}, $top honoured
    POST Users      201 {"d": {...}} with Location, or 400 without a Name

An OData V2 error is {"error": {"code", "message": {"lang": "en", "value"}}}. Paths and
query options are read percent-decoded, as pyodata sends them (Users%281%29, %24top=5).
"""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = "/sap/opu/odata/sap/DEMO_SRV/"
USERS = {1: "First"}
LOCK = threading.Lock()

METADATA = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"
    xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
  <edmx:DataServices m:DataServiceVersion="2.0">
    <Schema Namespace="DEMO_SRV" xmlns="http://schemas.microsoft.com/ado/2008/09/edm">
      <EntityType Name="User">
        <Key><PropertyRef Name="ID"/></Key>
        <Property Name="ID" Type="Edm.Int32" Nullable="false"/>
        <Property Name="Name" Type="Edm.String"/>
      </EntityType>
      <EntityContainer Name="DEMO_SRV_Entities" m:IsDefaultEntityContainer="true">
        <EntitySet Name="Users" EntityType="DEMO_SRV.User"/>
      </EntityContainer>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"""


def entity(uid):
    meta = {"uri": f"{ROOT}Users({uid})", "type": "DEMO_SRV.User"}
    return {"__metadata": meta, "ID": uid, "Name": USERS[uid]}


def odata_error(status, code, value):
    return status, {"error": {"code": code, "message": {"lang": "en", "value": value}}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json", extra=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("DataServiceVersion", "2.0")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def route(self):
        """The path under the service root (percent-decoded) and the query options."""
        url = urlsplit(self.path)
        path = unquote(url.path)
        if not path.startswith(ROOT):
            return None, {}
        return path[len(ROOT):], {k: v[0] for k, v in parse_qs(url.query).items()}

    def do_GET(self):
        path, query = self.route()
        if path == "$metadata":
            return self.reply(200, METADATA, "application/xml")
        one = re.fullmatch(r"Users\((\d+)\)", path or "")
        with LOCK:
            if one and int(one[1]) in USERS:
                return self.reply(200, {"d": entity(int(one[1]))})
            if path == "Users":
                ids = sorted(USERS)[: int(query["$top"])] if "$top" in query else sorted(USERS)
                return self.reply(200, {"d": {"results": [entity(i) for i in ids]}})
        self.reply(*odata_error(404, "RESOURCE_NOT_FOUND", f"Resource not found: {path}"))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path, _ = self.route()
        if path != "Users":
            return self.reply(*odata_error(404, "RESOURCE_NOT_FOUND", f"Resource not found: {path}"))
        if not body.get("Name"):
            return self.reply(*odata_error(400, "INVALID_ENTITY", "Property Name is required"))
        with LOCK:
            uid = max(USERS) + 1
            USERS[uid] = body["Name"]
            created = entity(uid)
        self.reply(201, {"d": created}, extra=[("Location", f"{ROOT}Users({uid})")])


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
