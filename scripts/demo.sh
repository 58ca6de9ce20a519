#!/usr/bin/env bash
# The main job end to end: install (with the eval extra, for the README's `eval`), migrate, ingest
# samples/, serve, query over HTTP, print top-5 and how to go on (scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# pip's noise about the machine's missing local indexes is dropped; a failed install stops here.
bash scripts/setup.sh offline,eval > >(grep -v "^WARNING: Location" >&2) 2>&1
exec "${RAG_VENV:-.venv}/bin/python" scripts/demo.py "$@"
