#!/usr/bin/env bash
# Sets up the environment, then runs the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The explorer's browser test drives Debian's chromium (never a browser download).
if [ ! -x /usr/bin/chromium ]; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends chromium
fi
# A throw-away PostgreSQL server on loopback: the service tests run on it and on SQLite.
source scripts/postgres-cluster.sh
trap stop_test_postgres EXIT
start_test_postgres
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy # app/ and training/, configured in pyproject.toml
# pytest exits 5 when it collects no test: set -e turns that into a failure too.
# One worker per core (pytest-xdist): many tests wait on servers they started, and
# each worker has its own temporary folders, databases and ports.
.venv/bin/python -m pytest -n auto "$@"
