#!/usr/bin/env bash
# A local PostgreSQL server for the history tests (and for trying a team history by hand):
# installs Debian's postgresql if missing, starts its cluster, and creates the role and the
# database lkchaos_test. Safe to run again. Prints the URL to use on stdout:
#   export LKCHAOS_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
set -euo pipefail
# Only the URL goes to stdout: everything the tools below print (pg_ctlcluster says
# "Removed stale pid file." after an unclean stop) goes to stderr.
exec 3>&1 1>&2
log() { printf '\033[1m[postgres]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { log "PostgreSQL is missing; install it (no apt-get here)"; exit 1; }
  log "installing postgresql"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
fi
cluster=$(pg_lsclusters --no-header | head -1)
if [ -z "$cluster" ]; then
  log "creating a cluster"
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  as_root pg_createcluster "$ver" main >/dev/null
  cluster=$(pg_lsclusters --no-header | head -1)
fi
read -r ver name port status _ <<<"$cluster"
if [ "$status" != online ]; then
  log "starting cluster $ver/$name on port $port"
  # 3>&-: the server must not hold the URL's pipe open. A server killed a moment ago may
  # still hold its socket's lock: try once more.
  as_root pg_ctlcluster "$ver" "$name" start 3>&- || { sleep 3; as_root pg_ctlcluster "$ver" "$name" start 3>&-; }
fi
for _ in $(seq 1 30); do as_postgres psql -p "$port" -qAtc 'select 1' >/dev/null 2>&1 && break; sleep 1; done
as_postgres psql -p "$port" -qAtc 'select 1' >/dev/null || { log "PostgreSQL did not answer on port $port"; exit 1; }
if [ "$(as_postgres psql -p "$port" -qAtc "select 1 from pg_roles where rolname='lkchaos'")" != 1 ]; then
  as_postgres psql -p "$port" -qc "create role lkchaos login password 'lkchaos' createdb" >/dev/null
fi
if [ "$(as_postgres psql -p "$port" -qAtc "select 1 from pg_database where datname='lkchaos_test'")" != 1 ]; then
  as_postgres psql -p "$port" -qc "create database lkchaos_test owner lkchaos" >/dev/null
fi
echo "postgresql://lkchaos:lkchaos@127.0.0.1:$port/lkchaos_test" >&3
