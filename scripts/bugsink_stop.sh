#!/usr/bin/env bash
# Stop the Bugsink started by scripts/bugsink_start.sh. Its database goes with the next
# start; the cached virtualenv stays. Does nothing when none is running.
# Environment: BUGSINK_STATE_DIR as for bugsink_start.sh.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_dir="${BUGSINK_STATE_DIR:-$repo_root/var/bugsink}"
pid_file="$state_dir/server.pid"

if [[ ! -f "$pid_file" ]]; then
  echo "bugsink_stop: nothing to stop" >&2
  exit 0
fi
pid="$(cat "$pid_file")"
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 50); do  # up to 10 s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
fi
rm -f "$pid_file" "$state_dir/env.sh"
echo "bugsink_stop: stopped Bugsink (pid $pid)" >&2
