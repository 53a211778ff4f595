# Sourced by scripts/test.sh: a throw-away PostgreSQL server for the service tests.
#
#   source scripts/postgres-cluster.sh
#   start_test_postgres            # exports MUSICSIM_TEST_POSTGRES_URL
#   trap stop_test_postgres EXIT   # always stops it and deletes its files
#
# The cluster lives in a temporary folder, listens on 127.0.0.1 only (a free port;
# its socket sits in that folder too) and trusts local connections: nothing in it
# outlives the test run. As root it runs as the `postgres` user, because PostgreSQL
# refuses to run as root; otherwise as the current user. When no server binaries
# are found, Debian's `postgresql` package is installed.

_find_pg_bin() {
  local initdb
  initdb=$(command -v initdb 2>/dev/null || true)
  if [ -z "$initdb" ]; then
    # Debian keeps them off PATH, one folder per major version: take the newest.
    initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [ -n "$initdb" ] && dirname "$(readlink -f "$initdb")"
}

_install_postgres() {
  echo "PostgreSQL server binaries not found: installing Debian's postgresql package" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
}

# Runs a command as the cluster's owner.
_as_pg_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_test_postgres() {
  local bin
  bin=$(_find_pg_bin || true)
  if [ -z "$bin" ]; then
    _install_postgres
    bin=$(_find_pg_bin)
  fi
  TEST_POSTGRES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/musicsim-pg.XXXXXX")
  [ "$(id -u)" -ne 0 ] || chown postgres: "$TEST_POSTGRES_DIR"
  _as_pg_owner "$bin/initdb" -D "$TEST_POSTGRES_DIR/data" -U musicsim --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$TEST_POSTGRES_DIR/initdb.log" 2>&1 || {
    cat "$TEST_POSTGRES_DIR/initdb.log" >&2
    return 1
  }
  local port attempt python=python3
  [ ! -x .venv/bin/python ] || python=.venv/bin/python # the project's Python 3.11, once set up
  for attempt in 1 2 3; do # another process may take the free port before the server binds it
    port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # fsync off: a crash loses this throw-away cluster anyway, and the tests run faster.
    if _as_pg_owner "$bin/pg_ctl" -D "$TEST_POSTGRES_DIR/data" -l "$TEST_POSTGRES_DIR/server.log" \
      -w -t 60 -o "-h 127.0.0.1 -p $port -k $TEST_POSTGRES_DIR -c fsync=off -c max_connections=200" \
      start >/dev/null; then
      export MUSICSIM_TEST_POSTGRES_URL="postgresql+psycopg://musicsim@127.0.0.1:$port/postgres"
      TEST_POSTGRES_BIN=$bin
      echo "throw-away PostgreSQL on 127.0.0.1:$port ($TEST_POSTGRES_DIR)" >&2
      return 0
    fi
  done
  cat "$TEST_POSTGRES_DIR/server.log" >&2
  return 1
}

stop_test_postgres() {
  [ -n "${TEST_POSTGRES_DIR:-}" ] || return 0
  if [ -n "${TEST_POSTGRES_BIN:-}" ]; then
    _as_pg_owner "$TEST_POSTGRES_BIN/pg_ctl" -D "$TEST_POSTGRES_DIR/data" -m immediate -w stop \
      >/dev/null 2>&1 || true
  fi
  rm -rf "$TEST_POSTGRES_DIR"
  TEST_POSTGRES_DIR=""
}
