#!/usr/bin/env bash
# Installs the real client packages the client tests drive (tests/real_clients.rs runs this
# first): npm packages from the lock files, and a Python venv from the pinned requirements.
# Idempotent: what is installed is kept. Needs node (18+), npm and python3 with venv.
set -euo pipefail
cd "$(dirname "$0")"
for dir in graph_js odata_js google_js; do
  if [ ! -d "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
if [ ! -x msgraph_py/.venv/bin/python ] || ! msgraph_py/.venv/bin/python -c 'import msgraph_core' 2>/dev/null; then
  python3 -m venv msgraph_py/.venv
  msgraph_py/.venv/bin/pip install --quiet --disable-pip-version-check -r msgraph_py/requirements.lock.txt
fi
if [ ! -x pyodata_py/.venv/bin/python ] || ! pyodata_py/.venv/bin/python -c 'import pyodata' 2>/dev/null; then
  python3 -m venv pyodata_py/.venv
  pyodata_py/.venv/bin/pip install --quiet --disable-pip-version-check -r pyodata_py/requirements.lock.txt
fi
if [ ! -x openapi_py/.venv/bin/openapi-spec-validator ]; then
  python3 -m venv openapi_py/.venv
  openapi_py/.venv/bin/pip install --quiet --disable-pip-version-check -r openapi_py/requirements.lock.txt
fi
