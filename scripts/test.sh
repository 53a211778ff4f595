#!/usr/bin/env bash
# Sets up the environment, then runs the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A throw-away PostgreSQL server on loopback: the service tests run on it and on SQLite.
source scripts/postgres-cluster.sh
trap stop_test_postgres EXIT
start_test_postgres
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# pytest exits 5 when it collects no test: set -e turns that into a failure too.
.venv/bin/python -m pytest "$@"
