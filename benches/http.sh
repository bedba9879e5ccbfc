#!/usr/bin/env bash
# HTTP load on loopback against `examples/bench_server` (an axum Router answering small
# JSON, wrapped in BatchLayer, on a two-thread runtime), in two parts:
#
# 1. `concurrency(1)` against `concurrency(8)`: batches of 100 GETs over HTTP/1.1 from
#    wrk (4 connections, 2 threads), sub-requests per second and p99 latency.
# 2. What users pick instead of batching: the same 100 GETs multiplexed over one HTTP/2
#    connection (h2load, 100 streams at once), against one batch of 100 over HTTP/1.1
#    and over HTTP/2 (h2load, one connection, one request at a time): requests per
#    second, sub-requests per second, and the server's CPU (user + system, from
#    /proc) per sub-request.
#
# Needs wrk and h2load (Debian: wrk, nghttp2-client). DURATION (seconds, default 10)
# and COUNT (h2load's requests, default 200000 sub-requests' worth) set the length;
# SERVER runs another build of the server (an older commit's, to compare).
#
#   bash benches/http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
COUNT=${COUNT:-200000}
if [ -z "${SERVER:-}" ]; then
  cargo build --release --quiet --example bench_server
  SERVER=target/release/examples/bench_server
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
python3 -c 'import json; print(json.dumps({"requests": [{"id": str(i), "url": f"/items/{i}"} for i in range(100)]}))' >"$work/batch.json"
for i in $(seq 0 99); do echo "/items/$i"; done >"$work/paths"
cat >"$work/batch.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local f = io.open("$work/batch.json")
wrk.body = f:read("*a")
f:close()
LUA

# Starts the server with `concurrency`; sets PID and BASE.
start() {
  "$SERVER" --concurrency "$1" >"$work/server.out" &
  PID=$!
  until grep -q "listening on" "$work/server.out" 2>/dev/null; do sleep 0.1; done
  BASE="http://$(sed -n 's/listening on //p' "$work/server.out")"
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
# The server's CPU so far, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
hz=$(getconf CLK_TCK)

echo "## concurrency over HTTP/1.1 (wrk -t2 -c4 -d${DURATION}s, 100-GET batches)"
for c in 1 8; do
  start "$c"
  wrk -t2 -c4 -d2s -s "$work/batch.lua" "$BASE/batch" >/dev/null
  wrk -t2 -c4 -d"${DURATION}s" --latency -s "$work/batch.lua" "$BASE/batch" >"$work/wrk"
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk")
  printf 'concurrency(%s): %.0f sub-requests/s, p99 %s\n' "$c" "$(echo "$rps * 100" | bc)" "$p99"
  stop
done

# One h2load run: prints requests/s, sub-requests/s and server CPU per sub-request.
h2() {
  local label=$1 per=$2
  shift 2
  local before after
  before=$(ticks)
  h2load "$@" >"$work/h2"
  after=$(ticks)
  local done_ rps
  done_=$(awk '/^requests:/ {print $8}' "$work/h2")
  rps=$(awk '/^finished in/ {print $4}' "$work/h2")
  awk -v l="$label" -v r="$rps" -v per="$per" -v d="$done_" -v t=$((after - before)) -v hz="$hz" 'BEGIN {
    printf "%-44s %9.0f requests/s %10.0f sub-requests/s %6.2f µs server CPU per sub-request\n", l, r, r * per, t / hz * 1e6 / (d * per) }'
}

echo
echo "## 100 GETs: multiplexed over HTTP/2 against batched (concurrency(1))"
start 1
batches=$((COUNT / 100))
h2 warm-up 1 -n 20000 -c 1 -m 100 -i "$work/paths" --base-uri="$BASE" >/dev/null
h2 "100 GETs multiplexed, one HTTP/2 connection" 1 -n "$COUNT" -c 1 -m 100 -i "$work/paths" --base-uri="$BASE"
h2 "one batch of 100 over HTTP/1.1" 100 --h1 -n "$batches" -c 1 -m 1 -d "$work/batch.json" -H 'content-type: application/json' "$BASE/batch"
h2 "one batch of 100 over HTTP/2" 100 -n "$batches" -c 1 -m 1 -d "$work/batch.json" -H 'content-type: application/json' "$BASE/batch"
stop
