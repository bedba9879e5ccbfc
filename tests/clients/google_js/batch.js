// batchelor 2.0.2 (Google-style batch: multipart/mixed of application/http parts), as its
// README batches: new Batchelor({uri, method, headers}), .add(...), .run(callback).
//
//   BASE=http://127.0.0.1:3000 SCENARIO=mixed|callbacks|auth [PREFIX=/v1.0] node batch.js
//
// mixed:     a read of user 1, a create, a read of a user that does not exist (404) and
//            another read, each with a requestId (its Content-ID); the replies come back
//            through run's callback, in response.parts
// callbacks: the same four without requestIds (batchelor makes `Batchelor_<hex>` ones) and
//            with a callback each, which batchelor picks by the Content-ID echoed back
// auth:      the batch sent with `auth: {bearer: "alice-token"}` (README-style, on the outer
//            request), holding GET /whoami twice: once plain, once with a part of its own
//            `auth: {bearer: "bob-token"}` (batchelor writes it into that part's head; the
//            server drops identity headers inside a sub-request, so both act as alice)
//
// Each part batchelor writes is `METHOD /path` with no HTTP version and LF line ends (a GET
// without a body has no blank line after its head either); the outer multipart is CRLF.
// Prints one JSON line per response as batchelor's parser returns it: {"id" (the Content-ID
// it matched, "response-" taken off), "status" (its statusCode, a string), "body" (JSON.parse
// of the part's body), "tag"} with tag the `extend` data passed through for that request
// (the name the script gave it); then {"parts", "errors"} for what run's callback got.
// {"error"} and exit code 1 when batchelor reports an error or throws.
const Batchelor = require("batchelor");

const BASE = (process.env.BASE || "http://127.0.0.1:3000").replace(/\/+$/, "");
const SCENARIO = process.env.SCENARIO || "mixed";
// A prefix for the sub-request paths: `/v1.0` through batch-proxy in front of upstream.py.
const PREFIX = (process.env.PREFIX || "").replace(/\/+$/, "");

function fail(e) {
  console.log(JSON.stringify({ error: `${(e && e.name) || "Error"}: ${(e && e.message) || e}` }));
  process.exit(1);
}
process.on("uncaughtException", fail);

const print = (part, tag) =>
  console.log(
    JSON.stringify({
      id: part.headers["Content-ID"],
      status: part.statusCode,
      body: part.body === "" ? null : part.body,
      tag,
    })
  );

const create = {
  method: "POST",
  path: `${PREFIX}/users`,
  parameters: {
    "Content-Type": "application/json;",
    body: { name: "Gus", email: "gus@example.com" },
  },
};
const requests = {
  mixed: [
    { method: "GET", path: `${PREFIX}/users/1`, requestId: "read-1", extend: "read-1" },
    { ...create, requestId: "create", extend: "create" },
    { method: "GET", path: `${PREFIX}/users/999999`, requestId: "missing", extend: "missing" },
    { method: "GET", path: `${PREFIX}/users/1`, requestId: "read-again", extend: "read-again" },
  ],
  callbacks: [
    { method: "GET", path: `${PREFIX}/users/1`, extend: "read-1" },
    { ...create, extend: "create" },
    { method: "GET", path: `${PREFIX}/users/999999`, extend: "missing" },
    { method: "GET", path: `${PREFIX}/users/1`, extend: "read-again" },
  ],
  auth: [
    { method: "GET", path: "/whoami", requestId: "outer", extend: "outer" },
    { method: "GET", path: "/whoami", requestId: "inner-bob", extend: "inner-bob", auth: { bearer: "bob-token" } },
  ],
}[SCENARIO];
if (!requests) fail(new Error(`unknown SCENARIO ${SCENARIO}`));

// The callbacks scenario prints from each request's own callback, as the Content-ID routes it.
if (SCENARIO === "callbacks") {
  for (const r of requests) r.callback = (part, extend) => print(part, extend);
}

const batch = new Batchelor({
  uri: `${BASE}/batch`,
  method: "POST",
  ...(SCENARIO === "auth" ? { auth: { bearer: "alice-token" } } : {}),
  headers: { "Content-Type": "multipart/mixed" },
});
batch.add(requests);
batch.run((err, response, extendData) => {
  if (err) fail(err);
  for (const part of response.parts) {
    const id = part.headers["Content-ID"];
    print(part, id === undefined ? null : extendData[id] || null);
  }
  console.log(JSON.stringify({ parts: response.parts.length, errors: response.errors }));
});
