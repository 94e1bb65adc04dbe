#!/bin/sh
# Entrypoint of mesh-postgres:local (scripts/build-images): Debian's
# PostgreSQL behaving like the public postgres image for what the compose
# examples use — a cluster in $PGDATA made on first start, superuser
# `postgres`, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256 with
# POSTGRES_PASSWORD, or trust) for TCP clients, listening on *:5432.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  pwfile=""
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  elif [ "$method" != trust ]; then
    echo "postgres-entrypoint: set POSTGRES_PASSWORD or POSTGRES_HOST_AUTH_METHOD=trust" >&2
    exit 1
  fi
  initdb -D "$PGDATA" -U postgres -E UTF8 --auth-local=trust --auth-host="$method" \
    ${pwfile:+--pwfile="$pwfile"} >/dev/null
  [ -n "$pwfile" ] && rm -f "$pwfile"
  printf 'host all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c log_connections=on "$@"
