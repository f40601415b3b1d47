#!/usr/bin/env bash
# Makes sure Redis, PostgreSQL and ClickHouse run on this machine: each is
# checked first, installed from Debian's packages only when missing, and
# started only when not answering. Safe to run again and again.
set -euo pipefail

source "$(dirname "$0")/env.sh"
log() { printf '[services] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # name, tries, command...
  local name=$1 tries=$2; shift 2
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$name did not come up"; return 1
}

command -v curl >/dev/null || apt_install curl ca-certificates

# --- Build tools ---------------------------------------------------------------
# The orchestrator parses SQL with PostgreSQL's own grammar (the pg_query
# crate builds libpg_query with cc and generates its bindings with bindgen,
# which loads libclang at build time). libclang-cpp alone is not it.
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1 \
    || apt_install libclang-dev

# --- Redis -----------------------------------------------------------------
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
if ! command -v redis-cli >/dev/null || ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis_up; then
    log "starting redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/sluice.log
    wait_for redis 40 redis_up
  fi
fi
log "redis ok"

# --- PostgreSQL ------------------------------------------------------------
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
if ! command -v pg_isready >/dev/null || ! pg_up; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql
    fresh_pg=1
  fi
  if ! pg_up; then
    log "starting postgresql"
    ver=$(ls /etc/postgresql | sort -V | tail -n1)
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster "$ver" main start
    wait_for postgresql 60 pg_up
  fi
  if [ "${fresh_pg:-0}" = 1 ]; then
    # A fresh Debian cluster asks for passwords on TCP: give postgres one
    # that matches the default DATABASE_URL.
    if [ "$(id -u)" -eq 0 ]; then
      (cd / && su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"") || true
    else
      (cd / && sudo -u postgres psql -q -c "ALTER USER postgres PASSWORD 'postgres'") || true
    fi
  fi
fi
log "postgresql ok"

# --- ClickHouse ------------------------------------------------------------
ch_up() { curl -fsS http://127.0.0.1:8123/ping | grep -q Ok; }
if ! ch_up; then
  [ -x /usr/bin/clickhouse-server ] || [ -x /usr/sbin/clickhouse-server ] || apt_install clickhouse-server clickhouse-client
  if ! ch_up; then
    log "starting clickhouse"
    bin=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)
    mkdir -p /var/lib/clickhouse /var/log/clickhouse-server
    chown -R clickhouse:clickhouse /var/lib/clickhouse /var/log/clickhouse-server 2>/dev/null || true
    # Debian's ClickHouse links jemalloc, which hands freed memory back to
    # the kernel; every insert then faults its buffers in again (about 40 %
    # of ClickHouse's CPU under Sluice's inserts here). Keeping the memory
    # costs resident size (a few GB under load) and saves that CPU; see
    # BENCHMARKS.md. SLUICE_CH_MALLOC_CONF overrides it ("" for jemalloc's
    # defaults).
    env MALLOC_CONF="${SLUICE_CH_MALLOC_CONF-dirty_decay_ms:-1,muzzy_decay_ms:-1}" \
      start-stop-daemon --start --quiet --background --chuid clickhouse:clickhouse \
      --exec "$bin" -- --config=/etc/clickhouse-server/config.xml
    wait_for clickhouse 120 ch_up
  fi
fi
log "clickhouse ok ($(curl -fsS 'http://127.0.0.1:8123/?query=SELECT%20version()'))"

# --- MariaDB (backup tests) and the PostgreSQL client tools ------------------
# The backup crate's tests dump and restore real databases with pg_dump/psql
# and mariadb-dump/mariadb; MariaDB listens on 127.0.0.1:3306, root over
# TCP without a password, as Debian's package sets it up for this machine.
command -v pg_dump >/dev/null || apt_install postgresql-client
my_up() { mariadb --protocol=TCP -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1'; }
# Answering at all (root through the unix socket, as root).
my_alive() { my_up || mariadb -u root -e 'SELECT 1'; }
if ! command -v mariadb >/dev/null || ! my_up >/dev/null 2>&1; then
  { command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; } || apt_install mariadb-server mariadb-client
  if ! my_up >/dev/null 2>&1; then
    log "starting mariadb"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for mariadb 120 my_alive
  fi
  # A fresh server lets root in only through the unix socket: open TCP for
  # root without a password (these are the tests' local throwaway databases).
  if ! my_up >/dev/null 2>&1; then
    mariadb -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES" || true
    wait_for mariadb 20 my_up
  fi
fi
log "mariadb ok ($(mariadb --protocol=TCP -h 127.0.0.1 -u root -N -e 'SELECT version()' 2>/dev/null))"

# --- moto (the backup crate's S3 tests) --------------------------------------
# backup/tests/s3.rs starts its own S3-compatible server per test
# (`python3 -m moto.server` on a spare port) and checks presigned URLs with
# botocore, which moto brings; only the packages are needed here.
command -v python3 >/dev/null || apt_install python3 python3-pip
if ! python3 -c 'import moto.server, flask, botocore' >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "installing moto[server] from PyPI"
  # Debian's own python3 refuses pip installs (PEP 668) unless told.
  python3 -m pip install -q 'moto[server]' \
    || python3 -m pip install -q --break-system-packages 'moto[server]'
fi
log "moto ok ($(python3 -c 'import moto; print(moto.__version__)'))"

# --- aiosmtpd (notification e-mail tests) -------------------------------------
# tests/e2e/notifications.rs starts its own SMTP server per test
# (`python3 -m aiosmtpd -n -l 127.0.0.1:<port>` with a handler that prints
# each message); only the package is needed here.
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "installing aiosmtpd from PyPI"
  python3 -m pip install -q aiosmtpd \
    || python3 -m pip install -q --break-system-packages aiosmtpd
fi
log "aiosmtpd ok ($(python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)'))"

# --- Python tools in a venv of their own (outside the clone) -----------------
# schemathesis (the OpenAPI document's conformance test) and the official
# Sentry SDK (the Sentry-protocol ingest tests), pinned; kept apart from the
# system Python so their dependencies cannot clash with moto's.
if ! "$SLUICE_PY/bin/python" -c 'import schemathesis, sentry_sdk' >/dev/null 2>&1; then
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
  log "creating $SLUICE_PY (schemathesis, sentry-sdk)"
  python3 -m venv "$SLUICE_PY"
  "$SLUICE_PY/bin/pip" install -q 'schemathesis==4.32.5' 'sentry-sdk==2.75.0'
fi
log "python tools ok ($("$SLUICE_PY/bin/st" --version), sentry-sdk $("$SLUICE_PY/bin/python" -c 'import sentry_sdk; print(sentry_sdk.VERSION)'))"

# --- Node Sentry SDK (the Sentry-protocol ingest tests) -----------------------
# tests/sdk/node pins @sentry/node in its package-lock.json; installed again
# only when node_modules is missing or older than the lock file.
command -v npm >/dev/null || apt_install nodejs npm
node_sdk="$(cd "$(dirname "$0")/.." && pwd)/tests/sdk/node"
if [ ! -d "$node_sdk/node_modules/@sentry/node" ] \
    || [ "$node_sdk/package-lock.json" -nt "$node_sdk/node_modules/.package-lock.json" ]; then
  log "npm ci in tests/sdk/node"
  (cd "$node_sdk" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
log "node sdk ok (node $(node --version), @sentry/node $(node -p "require('$node_sdk/node_modules/@sentry/node/package.json').version"))"

# --- OpenSSH server binary (backup SSH transport tests) -----------------------
# The backup crate's SSH and docker transport tests start their own sshd
# (generated config and keys, a spare port on 127.0.0.1, killed afterwards);
# they only need the binary and its privilege separation directory. Nothing
# here starts or configures a system sshd.
[ -x /usr/sbin/sshd ] || apt_install openssh-server
$SUDO mkdir -p /run/sshd
log "sshd binary ok ($(/usr/sbin/sshd -V 2>&1 | head -n1))"
