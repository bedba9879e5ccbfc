"""pyodata 1.12.1 (SAP's OData V2 client, Python), as its documentation batches:
service.create_batch(), service.create_changeset(), add_request, execute(), and the
results its own handlers return.

    BASE=http://127.0.0.1:3001 SCENARIO=proxy-reads .venv/bin/python batch.py

proxy-reads, proxy-writes: against batch-proxy --odata-v2-path
'/sap/opu/odata/sap/DEMO_SRV/$batch' in front of tests/clients/odata_v2_upstream.py; the
service is pyodata.Client(BASE + '/sap/opu/odata/sap/DEMO_SRV/'), its metadata fetched
through the proxy, and the requests are its entity-set API's.
  proxy-reads:  get_entity(1) and get_entities().top(5) in one batch
  proxy-writes: a changeset of one create, then get_entity(1); then a batch with a
                changeset of two creates, which the proxy refuses (no transaction hook),
                and get_entities() outside a batch
demo-commit, demo-rollback: against the demo's /v2 routes (plain JSON, not OData V2
payloads) and its OData V2 batch endpoint /v2/$batch. pyodata's entity sets cannot
address them, so its batch machinery (encoder, decoder, handlers) carries requests of a
small ODataHttpRequest subclass, each handled into (status, parsed JSON body).
  demo-commit:   a changeset of two creates, then a read of users/1
  demo-rollback: a changeset whose second create is invalid, then a read of users/1;
                 pyodata raises on the failed changeset (answered with one response), so
                 the read, which the demo does answer (V2 runs every request), is lost

Prints one JSON line per result as pyodata's handlers returned it, {"index", ...} (a
changeset's results are "i.j"): an entity {"ID", "Name"}, a list {"names"}, a demo request
{"status", "name"}. What pyodata raised where the scenario expects it to raise:
{"raised", "message", "status", "body"}, from the response the exception holds (the random
batch id left out of the message). The users listed after a refused batch, {"listed"}; the
demo's user count before and after, {"users"}. {"error"} and exit code 1 on anything else.
"""
import json
import os

import pyodata
import requests
from pyodata.exceptions import HttpError
from pyodata.v2.service import EntityProxy, ListWithTotalCount, ODataHttpRequest

BASE = os.environ.get("BASE", "http://127.0.0.1:3001").rstrip("/")
SCENARIO = os.environ.get("SCENARIO", "proxy-reads")

# Metadata for a service pyodata will not fetch anything for: the demo's routes are not
# entity sets, only the batch machinery is used.
EMPTY_METADATA = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"
    xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
  <edmx:DataServices m:DataServiceVersion="2.0">
    <Schema Namespace="DEMO" xmlns="http://schemas.microsoft.com/ado/2008/09/edm">
      <EntityContainer Name="DEMO_Entities" m:IsDefaultEntityContainer="true"/>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"""


class Call(ODataHttpRequest):
    """A request of the demo's plain JSON API, handled into (status, parsed JSON body)."""

    def __init__(self, service, method, path, body=None):
        super().__init__(service.url, service.connection, lambda r: (r.status_code, r.json()))
        self._method, self._path, self._body = method, path, body

    def get_method(self):
        return self._method

    def get_path(self):
        return self._path

    def get_body(self):
        return None if self._body is None else json.dumps(self._body)

    def get_default_headers(self):
        headers = {"Accept": "application/json"}
        if self._body is not None:
            headers["Content-Type"] = "application/json"
        return headers


def emit(index, result):
    """One line per result; a changeset's results (a list of results) one line each."""
    if isinstance(result, EntityProxy):
        print(json.dumps({"index": index, "ID": result.ID, "Name": result.Name}))
    elif isinstance(result, tuple):
        status, body = result
        print(json.dumps({"index": index, "status": status, "name": (body or {}).get("name")}))
    elif isinstance(result, ListWithTotalCount):
        print(json.dumps({"index": index, "names": [r.Name for r in result]}))
    elif isinstance(result, list):
        for j, inner in enumerate(result):
            emit(f"{index}.{j}", inner)
    else:
        raise TypeError(f"result {index} is {result!r}")


def execute(batch):
    for i, result in enumerate(batch.execute()):
        emit(str(i), result)


def raised(e, batch_id=None):
    """What pyodata raised: its class, message (the random batch id left out) and status."""
    message = str(e) if batch_id is None else str(e).replace(batch_id, "<batch id>")
    try:
        body = json.loads(e.response.content)
    except ValueError:
        body = None
    status = e.response.status_code
    print(json.dumps({"raised": type(e).__name__, "message": message, "status": status, "body": body}))


def proxy_reads():
    service = pyodata.Client(BASE + "/sap/opu/odata/sap/DEMO_SRV/", requests.Session())
    users = service.entity_sets.Users
    batch = service.create_batch()
    batch.add_request(users.get_entity(1))
    batch.add_request(users.get_entities().top(5))
    execute(batch)


def proxy_writes():
    service = pyodata.Client(BASE + "/sap/opu/odata/sap/DEMO_SRV/", requests.Session())
    users = service.entity_sets.Users
    batch = service.create_batch()
    changeset = service.create_changeset()
    changeset.add_request(users.create_entity().set(Name="Second"))
    batch.add_request(changeset)
    batch.add_request(users.get_entity(1))
    execute(batch)

    batch = service.create_batch()
    changeset = service.create_changeset()
    changeset.add_request(users.create_entity().set(Name="Third"))
    changeset.add_request(users.create_entity().set(Name="Fourth"))
    batch.add_request(changeset)
    try:
        batch.execute()
        raise AssertionError("a changeset of two requests went through")
    except HttpError as e:
        raised(e, batch.id)
    # Nothing of it ran: the users, read outside a batch.
    print(json.dumps({"listed": [u.Name for u in users.get_entities().execute()]}))


def demo_service():
    return pyodata.Client(BASE + "/v2/", requests.Session(), metadata=EMPTY_METADATA)


def user(name):
    return {"name": name, "email": f"{name.lower()}@example.com"}


def demo_commit():
    service = demo_service()
    batch = service.create_batch()
    changeset = service.create_changeset()
    changeset.add_request(Call(service, "POST", "users", user("Ann")))
    changeset.add_request(Call(service, "POST", "users", user("Bea")))
    batch.add_request(changeset)
    batch.add_request(Call(service, "GET", "users/1"))
    execute(batch)


def count_users():
    print(json.dumps({"users": len(requests.get(BASE + "/v2/users").json())}))


def demo_rollback():
    service = demo_service()
    count_users()
    batch = service.create_batch()
    changeset = service.create_changeset()
    changeset.add_request(Call(service, "POST", "users", user("Rolled")))
    changeset.add_request(Call(service, "POST", "users", {}))
    batch.add_request(changeset)
    batch.add_request(Call(service, "GET", "users/1"))
    try:
        batch.execute()
        raise AssertionError("the failed changeset raised nothing")
    except HttpError as e:
        raised(e)
    count_users()


SCENARIOS = {
    "proxy-reads": proxy_reads,
    "proxy-writes": proxy_writes,
    "demo-commit": demo_commit,
    "demo-rollback": demo_rollback,
}

if __name__ == "__main__":
    try:
        SCENARIOS[SCENARIO]()
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"[:500]}))
        raise SystemExit(1)
