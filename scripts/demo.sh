#!/usr/bin/env bash
# The main job end to end: install, migrate, ingest samples/, serve, query over HTTP, print top-5.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh offline 2>&1 | grep -v "^WARNING: Location" >&2 || true
exec "${RAG_VENV:-.venv}/bin/python" scripts/demo.py "$@"
