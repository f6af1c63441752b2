#!/bin/sh
# Entrypoint of faultline/postgres:15 (built by scripts/build-images.sh).
# It follows the official postgres image's interface, so the docker provider
# drives both the same way:
#   POSTGRES_PASSWORD (required), POSTGRES_USER (default postgres),
#   POSTGRES_DB (default $POSTGRES_USER), POSTGRES_INITDB_ARGS, PGDATA.
# On the first start (no $PGDATA/PG_VERSION) it runs initdb with password
# authentication for TCP clients; later starts (after a kill or stop of the
# same container) reuse the data directory. Then it execs the command
# ("postgres -c ..."). It runs as uid 999 (the image's USER); PostgreSQL
# refuses to run as root.
set -eu

if [ "${1:-}" != "postgres" ]; then
	exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
	echo "docker-entrypoint: run this image as uid 999 (its default USER), not root" >&2
	exit 1
fi

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA

# A cluster pre-built by build-images.sh (superuser and database
# "faultline", marker file .faultline-template) saves initdb on first start:
# only the password is set (for another user or database, they are created
# in it: wiping the cluster and running initdb fails on fuse-overlayfs).
marker="$PGDATA/.faultline-template"
if [ -f "$marker" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "docker-entrypoint: POSTGRES_PASSWORD is empty: set it (the database is reachable over TCP)" >&2
		exit 1
	fi
	read -r tuser tdb <"$marker"
	pw=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
	role=$(printf '%s' "$POSTGRES_USER" | sed 's/"/""/g')
	db=$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')
	{
		if [ "$POSTGRES_USER" = "$tuser" ]; then
			echo "ALTER ROLE \"$role\" PASSWORD '$pw';"
		else
			echo "CREATE ROLE \"$role\" SUPERUSER LOGIN PASSWORD '$pw';"
			echo "ALTER ROLE \"$tuser\" PASSWORD NULL;"
		fi
		if [ "$POSTGRES_DB" != "$tdb" ] && [ "$POSTGRES_DB" != postgres ]; then
			echo "CREATE DATABASE \"$db\" OWNER \"$role\";"
		fi
	} | postgres --single -F -c jit=off -D "$PGDATA" postgres >/tmp/setup.log 2>&1 || {
		cat /tmp/setup.log >&2
		exit 1
	}
	if grep -qE '^(ERROR|FATAL|PANIC)' /tmp/setup.log; then
		cat /tmp/setup.log >&2
		exit 1
	fi
	rm -f "$marker" /tmp/setup.log
	echo "docker-entrypoint: pre-built cluster $PGDATA ready (user $POSTGRES_USER, database $POSTGRES_DB)"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "docker-entrypoint: POSTGRES_PASSWORD is empty: set it (the database is reachable over TCP)" >&2
		exit 1
	fi
	mkdir -p "$PGDATA"
	chmod 700 "$PGDATA"
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list on purpose
	initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 \
		--locale=C --encoding=UTF8 --no-sync ${POSTGRES_INITDB_ARGS:-} >/tmp/initdb.log 2>&1 ||
		{
			cat /tmp/initdb.log >&2
			rm -f "$pwfile"
			exit 1
		}
	rm -f "$pwfile"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	if [ "$POSTGRES_DB" != "postgres" ]; then
		db=$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')
		echo "CREATE DATABASE \"$db\";" |
			postgres --single -F -c jit=off -D "$PGDATA" postgres >/tmp/createdb.log 2>&1 ||
			{
				cat /tmp/createdb.log >&2
				exit 1
			}
	fi
	echo "docker-entrypoint: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi

exec "$@"
