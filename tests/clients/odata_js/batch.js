// odata-batch-request 0.8.0 (OData 4.0 multipart/mixed), as its README batches: the
// package builds the body and parses the reply; the user sends it with fetch.
//
//   BASE=http://127.0.0.1:3000 SCENARIO=commit|rollback|plain node batch.js
//
// commit:   a changeset of two creates, then a read outside it
// rollback: a changeset whose second create is invalid (no name)
// plain:    the same requests without a changeset (no transaction hook needed)
//
// Prints one JSON line per operation, {"index", "status", "body"} (body parsed as JSON
// when it is), as the package's parser returns them; then {"hasError"}.
const { ODataBatchRequest, ODataBatchOperation, ODataBatchChangeset } = require("odata-batch-request");

const BASE = (process.env.BASE || "http://127.0.0.1:3000").replace(/\/+$/, "");
const SCENARIO = process.env.SCENARIO || "commit";

async function main() {
  const json = { "Content-Type": "application/json" };
  const create = (user) => new ODataBatchOperation("post", "users", { headers: json, body: JSON.stringify(user) });
  const user = (name) => ({ name, email: `${name.toLowerCase()}@example.com` });
  const read = new ODataBatchOperation("get", "users/1");
  const operations = {
    commit: [new ODataBatchChangeset([create(user("Ann")), create(user("Bea"))]), read],
    rollback: [new ODataBatchChangeset([create(user("Rolled")), create({})]), read],
    plain: [create(user("Ann")), create(user("Bea")), read],
  }[SCENARIO];
  const batch = new ODataBatchRequest(`${BASE}/v1.0`, operations);
  const res = await fetch(batch.url, { method: "POST", headers: batch.headers, body: batch.body });
  const parsed = batch.parseResponse(await res.text(), res.headers.get("content-type"));
  const emit = (index, r) => {
    let body = r.body;
    try { body = JSON.parse(r.body); } catch (e) {}
    console.log(JSON.stringify({ index, status: r.status, body }));
  };
  parsed.operations.forEach((r, i) => {
    if (Array.isArray(r)) r.forEach((inner, j) => emit(`${i}.${j}`, inner));
    else emit(`${i}`, r);
  });
  console.log(JSON.stringify({ hasError: parsed.hasError }));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: `${e && e.name}: ${e && e.message}` }));
  process.exit(1);
});
