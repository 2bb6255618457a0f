#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the test suite, on a free loopback port.
#
#   eval "$(scripts/pg_start.sh)"     # exports TEST_POSTGRES_URL
#   make test
#   scripts/pg_stop.sh                # stops it and deletes its data
#
# Only the export line goes to stdout; progress goes to stderr. Running it again
# while the server is up prints the same export line.
#
# Options:
#   --install-if-missing   apt-get install PostgreSQL when no initdb is found (root only; CI uses it)
# Environment:
#   PG_PORT        port to listen on (default: a free one)
#   PG_STATE_DIR   where the state file lives (default: var/pg in the repo)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_dir="${PG_STATE_DIR:-$repo_root/var/pg}"
state_file="$state_dir/state"
db_user="app"
db_name="app_test"
install_if_missing=false

for arg in "$@"; do
  case "$arg" in
    --install-if-missing) install_if_missing=true ;;
    *) echo "pg_start: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { echo "pg_start: $*" >&2; }

find_bindir() {
  local dir
  # Debian keeps server binaries out of PATH, one directory per major version.
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [[ -x "$dir/initdb" ]]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  return 1
}

# Run a PostgreSQL command; initdb refuses root, so root runs it as "postgres".
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

print_exports() {
  echo "export TEST_POSTGRES_URL='postgresql+asyncpg://$db_user@127.0.0.1:$1/$db_name'"
}

if [[ -f "$state_file" ]]; then
  # shellcheck disable=SC1090
  source "$state_file"
  if as_pg "$PG_BINDIR/pg_ctl" -D "$PG_TMP/data" status >/dev/null 2>&1; then
    log "already running on 127.0.0.1:$PG_PORT (data $PG_TMP/data)"
    print_exports "$PG_PORT"
    exit 0
  fi
  log "stale state file, starting afresh"
  rm -rf "$PG_TMP" "$state_file"
fi

if ! bindir="$(find_bindir)"; then
  if [[ "$install_if_missing" == true && $EUID -eq 0 ]]; then
    log "PostgreSQL not found, installing it from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    bindir="$(find_bindir)" || { log "initdb still missing after install"; exit 1; }
  else
    log "PostgreSQL server binaries (initdb) not found; install them, e.g. apt-get install postgresql"
    exit 1
  fi
fi

if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi

port="${PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/app-pg.XXXXXX")"
if [[ $EUID -eq 0 ]]; then chown postgres: "$tmp"; fi

mkdir -p "$state_dir"
printf 'PG_BINDIR=%q\nPG_TMP=%q\nPG_PORT=%q\n' "$bindir" "$tmp" "$port" >"$state_file"

log "initdb in $tmp/data ($("$bindir/initdb" --version))"
as_pg "$bindir/initdb" -D "$tmp/data" -A trust -U "$db_user" -E UTF8 --locale=C --no-sync >"$tmp/initdb.log" 2>&1 \
  || { cat "$tmp/initdb.log" >&2; exit 1; }

# Durability is pointless for a throwaway test database; speed is not.
as_pg "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w -t 30 \
  -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null || { cat "$tmp/log" >&2; exit 1; }

as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U "$db_user" "$db_name"
log "started on 127.0.0.1:$port, database $db_name (log $tmp/log)"
print_exports "$port"
