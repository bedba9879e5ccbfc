// The Microsoft Graph JavaScript SDK (@microsoft/microsoft-graph-client 3.0.7), as its
// documentation batches: BatchRequestContent, client.api("/$batch").post,
// BatchResponseContent, getResponseById(id).json().
//
//   BASE=http://127.0.0.1:3000 node batch.js
//
// The SDK takes dependencies that form one chain (or all name the same one): each item here
// depends on the one before it. Prints one JSON line per item, {"id", "status", "body"}, as the SDK's own parser returns
// them; {"error"} and exit code 1 when the SDK throws.
const { Client, BatchRequestContent, BatchResponseContent } = require("@microsoft/microsoft-graph-client");

const BASE = (process.env.BASE || "http://127.0.0.1:3000").replace(/\/+$/, "");

async function main() {
  // Over http the SDK sends no token; the auth provider is still required.
  const client = Client.init({ authProvider: (done) => done(null, "token"), baseUrl: BASE, defaultVersion: "v1.0" });
  const url = (path) => `${BASE}/v1.0${path}`;
  const json = { "Content-Type": "application/json" };
  const steps = [
    { id: "1", request: new Request(url("/users"), { method: "POST", headers: json, body: JSON.stringify({ name: "Ada", email: "ada@example.com" }) }) },
    { id: "2", request: new Request(url("/users/1")), dependsOn: ["1"] },
    { id: "3", request: new Request(url("/users/999999")), dependsOn: ["2"] },
    { id: "4", request: new Request(url("/users/1")), dependsOn: ["3"] },
  ];
  const content = new BatchRequestContent(steps);
  const reply = new BatchResponseContent(await client.api("/$batch").post(await content.getContent()));
  for (const { id } of steps) {
    const res = reply.getResponseById(id);
    console.log(JSON.stringify({ id, status: res.status, body: await res.json() }));
  }
}

main().catch((e) => {
  console.log(JSON.stringify({ error: `${e && e.name}: ${e && e.message}` }));
  process.exit(1);
});
