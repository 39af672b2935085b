# Source me: install PostgreSQL (Debian packages) if missing, start a throwaway cluster on
# loopback, create the test database, and export WORKBENCH_TEST_POSTGRES_URL. Idempotent.
# Works as root on a fresh Debian machine (the server runs as the `postgres` user) or as a
# user who can run the PostgreSQL binaries.
WORKBENCH_PG_PORT=${WORKBENCH_PG_PORT:-55432}
WORKBENCH_PG_DATA=${WORKBENCH_PG_DATA:-/tmp/workbench-pg}
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
_pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then _pg_as=(runuser -u postgres --); else _pg_as=(); fi
if [ ! -s "$WORKBENCH_PG_DATA/PG_VERSION" ]; then
  mkdir -p "$WORKBENCH_PG_DATA"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$WORKBENCH_PG_DATA"
  "${_pg_as[@]}" "$_pg_bin/initdb" -D "$WORKBENCH_PG_DATA" -A trust -U postgres >/dev/null
fi
if ! "${_pg_as[@]}" "$_pg_bin/pg_ctl" -D "$WORKBENCH_PG_DATA" status >/dev/null 2>&1; then
  # fsync=off: a throwaway test cluster. max_connections: 4 workers x (Optuna pool + heartbeat thread) per test, and the tests' own.
  "${_pg_as[@]}" "$_pg_bin/pg_ctl" -D "$WORKBENCH_PG_DATA" -l "$WORKBENCH_PG_DATA/server.log" -w \
    -o "-p $WORKBENCH_PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
fi
"${_pg_as[@]}" "$_pg_bin/psql" -h 127.0.0.1 -p "$WORKBENCH_PG_PORT" -U postgres -tAc \
  "select 1 from pg_database where datname = 'workbench_test'" | grep -q 1 ||
  "${_pg_as[@]}" "$_pg_bin/createdb" -h 127.0.0.1 -p "$WORKBENCH_PG_PORT" -U postgres workbench_test
export WORKBENCH_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$WORKBENCH_PG_PORT/workbench_test"
