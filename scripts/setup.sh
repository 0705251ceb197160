#!/usr/bin/env bash
# Make this machine ready to run, test and bench checkin-offers: a Python venv with the
# project installed, a PostgreSQL server with PostGIS available, a Redis server, and Debian's
# chromium for the console's browser tests.
# Idempotent, and quick when everything is already there.
#
#   scripts/setup.sh                 # everything
#   scripts/setup.sh --python-only   # just the venv (enough for lint / openapi)
#   scripts/setup.sh --tests         # everything, and stop when chromium or what the fault tests
#                                    # need (server binaries) cannot be had
#
# Where PostgreSQL and Redis come from, first match wins, per service:
#   (a) CHECKIN_DATABASE_URL / CHECKIN_REDIS_URL set: used as given, only checked.
#   (b) something answers on 127.0.0.1:5432 / :6379: used (PostGIS added via apt if missing).
#   (b') a local Debian install that is merely stopped: started.
#   (c) a Docker engine answers: `docker compose up -d --wait db|redis`.
#   (d) root with apt-get: Debian packages installed and started (no systemd needed).
#   (e) otherwise: fail, saying what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive
PY=.venv/bin/python
STAMP=.venv/.checkin-offers-setup.sha256
WAIT_SECONDS=30

step() { echo "setup: $1 ... $2"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }
can_apt() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; }

# Package lists on a fresh machine are empty or stale: refresh once per run, before first use.
APT_UPDATED=
apt_update_once() { [[ -n $APT_UPDATED ]] || { apt-get update -q >/dev/null; APT_UPDATED=1; }; }
apt_install() { can_apt || return 1; apt_update_once; apt-get install -y -q "$@" >/dev/null; }

# True when something accepts TCP connections on 127.0.0.1:$1 (loopback only, by design).
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() {  # wait_for WHAT COMMAND...: retry COMMAND for up to WAIT_SECONDS
  local what=$1 i; shift
  for ((i = 0; i < WAIT_SECONDS; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  "$@" >/dev/null || true  # once more, showing the error this time
  die "$what did not answer within ${WAIT_SECONDS}s"
}

docker_ok() { command -v docker >/dev/null && timeout 15 docker info >/dev/null 2>&1; }

# --------------------------------------------------------------------------- Python
python_ok() {  # usable to build our venv: >= 3.11 with venv and ensurepip (pip)
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

find_python() {
  local c
  for c in python3 python3.13 python3.12 python3.11; do
    command -v "$c" >/dev/null && python_ok "$c" && { echo "$c"; return 0; }
  done
  return 1
}

setup_python() {
  local py hash
  if ! { [[ -x $PY ]] && "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }; then
    # A venv whose interpreter vanished or is too old cannot be repaired in place.
    [[ -e .venv ]] && { step venv "broken or Python < 3.11, recreating"; rm -rf .venv; }
    if ! py=$(find_python); then
      can_apt || die "need python3 >= 3.11 with venv and pip (Debian: apt-get install python3 python3-venv python3-pip)"
      step python "installing from apt"
      apt_install python3 python3-venv python3-pip
      py=$(find_python) || die "apt's python3 is older than 3.11; install Python >= 3.11 with venv and pip"
    fi
    "$py" -m venv .venv
    step venv "created with $("$PY" --version)"
  else
    step venv "ok ($("$PY" --version))"
  fi

  # Reinstall only when the dependency inputs changed since the last successful install.
  hash=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
  if [[ $(cat "$STAMP" 2>/dev/null) == "$hash" ]]; then
    step deps "ok (unchanged)"
  else
    step deps "installing (pip install -c requirements.lock -e .[dev])"
    "$PY" -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
    echo "$hash" >"$STAMP"
    step deps "ok"
  fi
}

# --------------------------------------------------------------------------- PostgreSQL
# The server's maintenance database as a libpq URL: the app's database may not exist yet
# (`checkin-offers migrate` creates it), and libpq does not know SQLAlchemy's "+psycopg".
pg_admin_url() {
  "$PY" - "$1" <<'EOF'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
print(urlunsplit(("postgresql", u.netloc, "/postgres", u.query, "")))
EOF
}

pg_query() {  # pg_query URL SQL: print the bare result; psql if present, else psycopg
  if command -v psql >/dev/null; then
    PGCONNECT_TIMEOUT=3 psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"
  else
    "$PY" - "$1" "$2" <<'EOF'
import sys, psycopg
with psycopg.connect(sys.argv[1], connect_timeout=3) as conn:
    for row in conn.execute(sys.argv[2]):
        print(*row, sep="|")
EOF
  fi
}

postgis_available() {
  [[ $(pg_query "$1" "SELECT 1 FROM pg_available_extensions WHERE name='postgis'") == 1 ]]
}

# Newest Debian cluster installed here, e.g. "15" (empty if none).
local_pg_version() {
  command -v pg_lsclusters >/dev/null || return 0
  pg_lsclusters -h 2>/dev/null | awk '$2 == "main" {print $1}' | sort -V | tail -n1
}

start_local_pg() {  # start (or reload) the Debian cluster without systemd
  local ver=$1
  if pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main"' | grep -q online; then
    pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  else
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  fi
}

install_local_pg() {
  local ver hba
  step postgres "installing from apt"
  # Resolve the version behind the "postgresql" metapackage so PostGIS matches it.
  apt_update_once
  ver=$(apt-cache depends postgresql | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1)
  [[ -n $ver ]] || die "could not resolve the PostgreSQL version behind apt's 'postgresql' package"
  apt_install "postgresql-$ver" "postgresql-$ver-postgis-3" postgresql-contrib
  [[ -n $(local_pg_version) ]] || pg_createcluster "$ver" main >/dev/null
  # We installed this server just now, for local development: let the postgres role in
  # without a password, from loopback only (the default URL has no password).
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! grep -q 'checkin-offers setup.sh' "$hba"; then
    sed -i '1i # checkin-offers setup.sh: passwordless postgres role from loopback (local dev only)\nhost all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  fi
  start_local_pg "$ver"
}

setup_postgres() {
  local admin ver
  if [[ -n ${CHECKIN_DATABASE_URL:-} ]]; then                                    # (a)
    admin=$(pg_admin_url "$CHECKIN_DATABASE_URL")
    wait_for "PostgreSQL at CHECKIN_DATABASE_URL" pg_query "$admin" "SELECT 1"
    postgis_available "$admin" || die "PostGIS is not available on the server at CHECKIN_DATABASE_URL; install it there"
    step postgres "ok (CHECKIN_DATABASE_URL)"; step postgis "ok"
    return
  fi

  admin=postgresql://postgres@127.0.0.1:5432/postgres
  if port_open 5432; then                                                        # (b)
    :  # use it as it is
  elif ver=$(local_pg_version) && [[ -n $ver ]] && [[ $(id -u) -eq 0 ]]; then    # (b')
    step postgres "starting local cluster $ver/main"
    start_local_pg "$ver"
  elif docker_ok; then                                                           # (c)
    step postgres "starting with docker compose"
    docker compose up -d --wait db
  elif can_apt; then                                                             # (d)
    install_local_pg
  else                                                                           # (e)
    die "no PostgreSQL with PostGIS. Provide one of: (1) CHECKIN_DATABASE_URL pointing at a server with PostGIS; (2) a server on 127.0.0.1:5432 accepting user postgres without a password; (3) a running Docker engine (docker compose up -d --wait db). Or rerun as root on Debian to install it."
  fi
  wait_for "PostgreSQL on 127.0.0.1:5432 (user postgres)" pg_query "$admin" "SELECT 1"
  step postgres "ok (127.0.0.1:5432)"

  if postgis_available "$admin"; then
    step postgis "ok"
    return
  fi
  can_apt || die "PostGIS is not available on the server at 127.0.0.1:5432; install PostGIS for it (run this script as root on Debian to do it)"
  ver=$(( $(pg_query "$admin" "SHOW server_version_num") / 10000 ))
  step postgis "installing postgresql-$ver-postgis-3"
  apt_install "postgresql-$ver-postgis-3"
  postgis_available "$admin" || die "installed postgresql-$ver-postgis-3 but the server at 127.0.0.1:5432 still has no PostGIS (is it a Debian PostgreSQL $ver?)"
  step postgis "ok"
}

# --------------------------------------------------------------------------- Redis
redis_ping() {  # redis_ping URL (via redis-py from the venv: handles auth, TLS, db index)
  "$PY" -c 'import sys, redis; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=3).ping()' "$1"
}

start_local_redis() {
  # No systemd here; keep nothing on disk (dev/test data only) so cwd does not matter.
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
}

setup_redis() {
  if [[ -n ${CHECKIN_REDIS_URL:-} ]]; then                                       # (a)
    wait_for "Redis at CHECKIN_REDIS_URL" redis_ping "$CHECKIN_REDIS_URL"
    step redis "ok (CHECKIN_REDIS_URL)"
    return
  fi

  if port_open 6379; then                                                        # (b)
    :  # use it as it is
  elif command -v redis-server >/dev/null; then                                  # (b')
    step redis "starting local redis-server"
    start_local_redis
  elif docker_ok; then                                                           # (c)
    step redis "starting with docker compose"
    docker compose up -d --wait redis
  elif can_apt; then                                                             # (d)
    step redis "installing from apt"
    apt_install redis-server
    port_open 6379 || start_local_redis  # the package may have started one itself
  else                                                                           # (e)
    die "no Redis. Provide one of: (1) CHECKIN_REDIS_URL; (2) a Redis on 127.0.0.1:6379; (3) a running Docker engine (docker compose up -d --wait redis). Or rerun as root on Debian to install it."
  fi
  wait_for "Redis on 127.0.0.1:6379" redis_ping redis://127.0.0.1:6379/0
  step redis "ok (127.0.0.1:6379)"
}

# --------------------------------------------------------------------------- Chromium
# The console's browser tests drive Debian's chromium through Playwright: a browser from the
# distribution, patched by its security updates, never one `playwright install` downloads.
# Only the tests need it: where it cannot be installed, `make run` warns and `make test` stops.
CHROMIUM=/usr/bin/chromium

setup_chromium() {
  if [[ -x $CHROMIUM ]]; then
    step chromium "ok ($CHROMIUM)"
  elif can_apt; then
    step chromium "installing from apt"
    apt_install chromium
    [[ -x $CHROMIUM ]] || die "installed Debian's chromium package but $CHROMIUM is still missing"
    step chromium "ok ($CHROMIUM)"
  elif [[ ${1:-} == --tests ]]; then
    die "$CHROMIUM is missing and cannot be installed without root and apt: install Debian's package (apt-get install chromium), then run make test again"
  else
    echo "setup: WARNING: $CHROMIUM is missing, so the console's browser tests will fail. Install Debian's package: apt-get install chromium (or rerun this script as root on Debian)." >&2
  fi
}

# --------------------------------------------------------------------------- private servers
# The fault tests (tests/test_faults.py) start a PostgreSQL cluster and a Redis of their own, on
# their own ports and data directories, to restart and stop them mid-load: they need the server
# binaries (and PostGIS for them) on this machine, even when the shared servers come from Docker.
private_servers_ok() {
  local bin
  command -v redis-server >/dev/null || return 1
  for bin in /usr/lib/postgresql/*/bin/initdb; do
    local ver=${bin#/usr/lib/postgresql/}; ver=${ver%%/*}
    [[ -f /usr/share/postgresql/$ver/extension/postgis.control ]] && return 0
  done
  return 1
}

setup_private_servers() {
  if private_servers_ok; then
    step "fault-test servers" "ok"
  elif can_apt; then
    step "fault-test servers" "installing PostgreSQL, PostGIS and Redis server packages"
    apt_update_once
    local ver
    ver=$(apt-cache depends postgresql | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1)
    apt_install "postgresql-$ver" "postgresql-$ver-postgis-3" redis-server
    private_servers_ok || die "installed the server packages but initdb with PostGIS or redis-server is still missing"
    step "fault-test servers" "ok"
  else
    die "the fault tests need PostgreSQL server binaries with PostGIS and redis-server on this machine: apt-get install postgresql postgresql-15-postgis-3 redis-server (or the packages of your PostgreSQL version), then run make test again"
  fi
}

case ${1:-} in
  "" | --python-only | --tests) ;;
  *) die "usage: scripts/setup.sh [--python-only | --tests]" ;;
esac
setup_python
[[ ${1:-} == --python-only ]] && exit 0
setup_postgres
setup_redis
setup_chromium "${1:-}"
[[ ${1:-} == --tests ]] && setup_private_servers
step all "ready"
