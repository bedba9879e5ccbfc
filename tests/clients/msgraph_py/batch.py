"""msgraph-core 1.5.2 (Python), as its documentation batches: BatchRequestItem,
BatchRequestContent, BatchRequestBuilder(adapter).post, and the BatchResponseContent it
returns.

    BASE=http://127.0.0.1:3000 .venv/bin/python batch.py

Prints one JSON line per item, {"id", "status", "body"}, as the client's own parser returns
them (body: json.loads of the bytes it keeps); {"error"} and exit code 1 when it raises.
The pins in requirements.lock.txt hold microsoft-kiota-serialization-json at 1.11.6: from
1.11.7 on, the parser drops every JSON object body (microsoft/kiota-python#737), against
Microsoft Graph as against anything else.
"""
import asyncio
import json
import os

from kiota_abstractions.api_client_builder import (
    register_default_deserializer,
    register_default_serializer,
)
from kiota_abstractions.authentication import AnonymousAuthenticationProvider
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from kiota_serialization_json.json_serialization_writer_factory import (
    JsonSerializationWriterFactory,
)
from msgraph_core import BaseGraphRequestAdapter
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem

BASE = os.environ.get("BASE", "http://127.0.0.1:3000").rstrip("/")


def request(method, path, body=None):
    info = RequestInformation()
    info.http_method = method
    info.url = f"{BASE}/v1.0{path}"
    if body is not None:
        info.headers.try_add("Content-Type", "application/json")
        info.content = json.dumps(body).encode()
    return info


async def main():
    register_default_serializer(JsonSerializationWriterFactory)
    register_default_deserializer(JsonParseNodeFactory)
    adapter = BaseGraphRequestAdapter(AnonymousAuthenticationProvider())
    adapter.base_url = f"{BASE}/v1.0"

    one = BatchRequestItem(request(Method.POST, "/users", {"name": "Ada", "email": "ada@example.com"}), id="1")
    two = BatchRequestItem(request(Method.GET, "/users/1"), id="2", depends_on=[one])
    three = BatchRequestItem(request(Method.GET, "/users/999999"), id="3", depends_on=[two])
    four = BatchRequestItem(request(Method.GET, "/users/1"), id="4", depends_on=[three])
    content = BatchRequestContent({"1": one, "2": two, "3": three, "4": four})
    try:
        reply = await BatchRequestBuilder(adapter).post(content)
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"[:500]}))
        raise SystemExit(1)
    for rid in ["1", "2", "3", "4"]:
        item = reply.get_response_by_id(rid)
        body = None if item.body is None else json.loads(item.body)
        print(json.dumps({"id": rid, "status": item.status, "body": body}))


if __name__ == "__main__":
    asyncio.run(main())
