#!/usr/bin/env bash
# Stop the PostgreSQL started by scripts/pg_start.sh and delete its data directory.
# Does nothing when none is running. Environment: PG_STATE_DIR as for pg_start.sh.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_file="${PG_STATE_DIR:-$repo_root/var/pg}/state"

if [[ ! -f "$state_file" ]]; then
  echo "pg_stop: nothing to stop" >&2
  exit 0
fi
# shellcheck disable=SC1090
source "$state_file"

as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

if [[ -d "$PG_TMP/data" ]]; then
  if ! as_pg "$PG_BINDIR/pg_ctl" -D "$PG_TMP/data" stop -m fast -w -t 30 >/dev/null 2>&1; then
    # Already gone, or stuck: make sure no postmaster outlives its data directory.
    if [[ -f "$PG_TMP/data/postmaster.pid" ]]; then
      kill -9 "$(head -n 1 "$PG_TMP/data/postmaster.pid")" 2>/dev/null || true
    fi
  fi
fi
rm -rf "$PG_TMP" "$state_file"
echo "pg_stop: stopped PostgreSQL on 127.0.0.1:$PG_PORT" >&2
