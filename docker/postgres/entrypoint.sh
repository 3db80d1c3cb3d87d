#!/bin/sh
# Initialise the cluster once (the volume keeps it) with the databases in POSTGRES_DATABASES:
# by default the `warehouse` database (what the sinks land) and the `registry` database (the
# schema registry's storage); the fulfilment centre's server names its own. At every start the
# role's password is set to the one in the environment, so credentials regenerated for a kept
# volume still work, and /docker-entrypoint-initdb.d/<database>.sql, where there is one, is run
# against its database (written to be run again: CREATE ... IF NOT EXISTS); then the server runs
# in the foreground, with POSTGRES_SERVER_OPTIONS (e.g. "-c wal_level=logical") appended.
set -eu
: "${POSTGRES_USER:=conveyor}"
: "${POSTGRES_DATABASES:=warehouse registry}"
: "${POSTGRES_SERVER_OPTIONS:=}"
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
# A cluster of another major version (a PostgreSQL 15 volume mounted here by hand) cannot be
# opened: say so instead of letting the server fail on it. docker/compose.yml gives each
# major version its own volume; the README says how to migrate.
if [ -s "$PGDATA/PG_VERSION" ] && [ "$(cat "$PGDATA/PG_VERSION")" != "$PG_MAJOR" ]; then
  echo "conveyor: ERROR: $PGDATA holds a PostgreSQL $(cat "$PGDATA/PG_VERSION") cluster;" \
    "this is PostgreSQL $PG_MAJOR. Dump it with the old stack and load it here (see README)," \
    "or start on an empty volume." >&2
  exit 1
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  runuser -u postgres -- initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
# Local socket only, trust auth: nothing outside the container can connect meanwhile.
# The server's own options apply here too: a cluster with a logical replication slot refuses
# to start below wal_level=logical ("slot ... exists, but wal_level < logical").
# Its log is shown only when it fails (pg_ctl itself just says "could not start server").
initlog=$(mktemp)
chown postgres "$initlog"
if ! runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses='' $POSTGRES_SERVER_OPTIONS" \
    -l "$initlog" -w start >/dev/null; then
  cat "$initlog" >&2
  exit 1
fi
rm -f "$initlog"
for db in $POSTGRES_DATABASES; do
  runuser -u postgres -- psql -q -U "$POSTGRES_USER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || runuser -u postgres -- psql -q -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE $db"
done
# \getenv keeps the password off the command line and out of the server's log.
runuser --preserve-environment -u postgres -- psql -X -q -v ON_ERROR_STOP=1 \
  -U "$POSTGRES_USER" -d postgres -v role="$POSTGRES_USER" >/dev/null <<'SQL'
\getenv password POSTGRES_PASSWORD
ALTER ROLE :"role" WITH PASSWORD :'password';
SQL
for db in $POSTGRES_DATABASES; do
  if [ -f "/docker-entrypoint-initdb.d/$db.sql" ]; then
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$db" \
      -f "/docker-entrypoint-initdb.d/$db.sql" >/dev/null
  fi
done
runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
unset POSTGRES_PASSWORD
# setpriv execs the server in place, so the stop signal from `docker stop` (SIGINT, see the
# Dockerfile) reaches postgres itself. runuser would stay in between, answer with "Session
# terminated, killing shell" and SIGKILL the server 2 s later, mid shutdown checkpoint.
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  env HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres \
  postgres -D "$PGDATA" -c listen_addresses='*' \
  -c shared_buffers=256MB -c max_connections=200 -c synchronous_commit=on $POSTGRES_SERVER_OPTIONS
