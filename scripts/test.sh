#!/usr/bin/env bash
# The test command: installs, makes sure PostgreSQL is up, runs every test except GPU ones.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip's noise about the machine's missing local indexes is dropped; a failed install stops here.
bash scripts/setup.sh test > >(grep -v "^WARNING: Location" >&2) 2>&1
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "==> starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  echo "==> starting Redis (rate-limit storage tests)" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
# Debian packages some tests drive; each such test skips, saying why, when its tool is missing
# (no apt, no root, no network): headless Chromium for the playground (tests/test_playground_browser.py),
# a compose client to validate docker/compose.yaml (tests/test_docker.py; no Docker engine needed).
packages=""
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || packages="chromium chromium-driver"
{ docker compose version || docker-compose version; } >/dev/null 2>&1 || packages="$packages docker-compose"
if [ -n "$packages" ]; then
  echo "==> installing $packages (apt-get)" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  { $sudo apt-get install -y -qq $packages \
      || { $sudo apt-get update -qq && $sudo apt-get install -y -qq $packages; }; } >/dev/null 2>&1 \
    || echo "==> could not install $packages; the tests that need them will be skipped" >&2
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${RAG_VENV:-.venv}/bin/python" -m pytest -m "not gpu" "$@"
