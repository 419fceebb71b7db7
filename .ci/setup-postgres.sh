#!/usr/bin/env bash
# PostgreSQL for the intake's PostgreSQL tests and bench (tests/intake/pg.py, bench/intake_pg.py),
# from Debian's package (idempotent: installs only what is missing, and runs apt-get update only
# then). The tests start a private cluster of their own (initdb into a temp dir, as the postgres
# user when run as root): this script only installs and checks the binaries. Debian's package
# creates and starts a default cluster: nothing uses it, and the tests never touch it.
#
#   initdb, pg_ctl, postgres   /usr/lib/postgresql/<version>/bin     postgresql
#   runuser                    the server as postgres under root     util-linux
#
# psycopg (the client) is a pip package: scripts/test.sh installs it with the `test` extra
# (pip install -e '.[test]'), like every Python test dependency; nothing is pip-installed here.
set -euo pipefail

bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n | tail -n1
}
have_pg() {
  local d; d=$(bindir)
  [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]
}

need=()
have_pg || need+=(postgresql)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-postgres: missing ${need[*]}; run this script as root to install them" >&2
    exit 1
  fi
  echo "setup-postgres: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
have_pg || { echo "setup-postgres: initdb/pg_ctl/postgres still not found under /usr/lib/postgresql/*/bin" >&2; exit 1; }
# As root the server must run as postgres (it refuses root): the package creates that user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "setup-postgres: no postgres user (the postgresql package creates it)" >&2
  exit 1
fi
echo "setup-postgres: $("$(bindir)/postgres" --version)"
