#!/usr/bin/env bash
# Start Bugsink (a self-hosted, Sentry-protocol error tracker) on a free loopback port,
# with a fresh SQLite database, one project and a full-access API token.
#
#   eval "$(scripts/bugsink_start.sh)"   # exports BUGSINK_URL, BUGSINK_DSN, BUGSINK_TOKEN
#   make test
#   scripts/bugsink_stop.sh
#
# Only export lines go to stdout; progress goes to stderr. Running it again while the
# server is up prints the same exports. Bugsink is installed in its own virtualenv
# (never the project's), cached across runs, so only the first run downloads it.
#
# Environment:
#   BUGSINK_VERSION     PyPI version to install (default below)
#   BUGSINK_VENV        where its virtualenv lives (default: ~/.cache/calling-backend/bugsink-<version>)
#   BUGSINK_PYTHON      interpreter for that virtualenv, 3.11 or newer (default: python3)
#   BUGSINK_PORT        port to listen on (default: a free one)
#   BUGSINK_STATE_DIR   configuration, database, log and pid file (default: var/bugsink in the repo)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${BUGSINK_VERSION:-2.6.2}"
venv="${BUGSINK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/calling-backend/bugsink-$version}"
python="${BUGSINK_PYTHON:-python3}"
state_dir="${BUGSINK_STATE_DIR:-$repo_root/var/bugsink}"
env_file="$state_dir/env.sh"
pid_file="$state_dir/server.pid"
startup_timeout_s=30

log() { echo "bugsink_start: $*" >&2; }

is_ready() {  # $1 = base URL
  "$venv/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/health/ready", timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
}

if [[ -f "$env_file" && -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  # shellcheck disable=SC1090
  source "$env_file"
  if is_ready "$BUGSINK_URL"; then
    log "already running at $BUGSINK_URL"
    cat "$env_file"
    exit 0
  fi
fi
"$repo_root/scripts/bugsink_stop.sh" 2>/dev/null || true

# --- the virtualenv, built once per version and machine -----------------------------
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock -w 600 9 || { log "timed out waiting for another install into $venv"; exit 1; }
if [[ ! -f "$venv/.installed" ]]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { log "$python is older than 3.11, which Bugsink needs; set BUGSINK_PYTHON"; exit 1; }
  log "installing bugsink==$version into $venv"
  started=$SECONDS
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check "bugsink==$version" >"$venv.install.log" 2>&1 \
    || { tail -n 30 "$venv.install.log" >&2; log "pip install failed (full log $venv.install.log)"; exit 1; }
  touch "$venv/.installed"
  log "installed in $((SECONDS - started)) s"
fi
flock -u 9

# --- configuration and a fresh database ---------------------------------------------
port="${BUGSINK_PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
url="http://127.0.0.1:$port"
rm -rf "$state_dir"
mkdir -p "$state_dir"
cd "$state_dir"  # bugsink-manage imports bugsink_conf from the working directory

"$venv/bin/bugsink-create-conf" --template=local --host 127.0.0.1 --port "$port" \
  --output-file bugsink_conf.py >/dev/null
cat >>bugsink_conf.py <<EOF

# --- added by scripts/bugsink_start.sh: everything inside $state_dir, no outbound calls
DATABASES["default"]["NAME"] = "$state_dir/db.sqlite3"
DATABASES["snappea"]["NAME"] = "$state_dir/snappea.sqlite3"
BUGSINK["INGEST_STORE_BASE_DIR"] = "$state_dir/ingestion"
BUGSINK["PHONEHOME"] = False
# Test suites send bursts; the default quotas would start answering 429.
BUGSINK["MAX_EVENTS_PER_PROJECT_PER_5_MINUTES"] = 100_000
BUGSINK["MAX_EVENTS_PER_5_MINUTES"] = 100_000
BUGSINK["MAX_EVENTS_PER_PROJECT_PER_HOUR"] = 1_000_000
BUGSINK["MAX_EVENTS_PER_HOUR"] = 1_000_000
EOF

"$venv/bin/bugsink-manage" migrate --verbosity 0 >&2
dsn="$("$venv/bin/bugsink-manage" shell --no-imports -c '
from projects.models import Project
from teams.models import Team

team, _ = Team.objects.get_or_create(name="tests")
project, _ = Project.objects.get_or_create(team=team, name="calling-backend")
print("DSN=" + project.dsn)
' | sed -n 's/^DSN=//p')"
token="$("$venv/bin/bugsink-manage" create_auth_token | tail -n 1)"
[[ -n "$dsn" && -n "$token" ]] || { log "could not create the project or the token"; exit 1; }

# --- the server -----------------------------------------------------------------------
setsid "$venv/bin/bugsink-manage" runserver "127.0.0.1:$port" --noreload >server.log 2>&1 </dev/null &
echo $! >"$pid_file"

deadline=$((SECONDS + startup_timeout_s))
until is_ready "$url"; do
  if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    log "server exited; its log:"; cat server.log >&2; exit 1
  fi
  if ((SECONDS >= deadline)); then
    log "not ready after ${startup_timeout_s}s; its log:"; cat server.log >&2; exit 1
  fi
  sleep 0.2
done

printf "export BUGSINK_URL=%q\nexport BUGSINK_DSN=%q\nexport BUGSINK_TOKEN=%q\n" \
  "$url" "$dsn" "$token" >"$env_file"
log "Bugsink $version ready at $url (pid $(cat "$pid_file"), log $state_dir/server.log)"
cat "$env_file"
