#!/usr/bin/env bash
# Create .venv (or $RAG_VENV) and install the project. torch is pinned here, installed first, so
# pip takes the CPU wheel instead of pulling a multi-GB CUDA build. Usage: setup.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RAG_VENV:-.venv}
extras=${1:-offline}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
echo "==> installing torch==2.13.0 and search-service[$extras] into $venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0
"$venv/bin/pip" install --quiet --disable-pip-version-check -e ".[$extras]"
