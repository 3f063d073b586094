#!/bin/sh
# guardian as a container's entrypoint (Litestream's two idioms):
#  1. restore the database from its replica on first start (an empty volume),
#     and do nothing when the database is already there or the replica is new;
#  2. run the application as guardian's child: signals go to the application,
#     guardian makes a final sync when it exits and exits with its status.
# GUARDIAN_CONFIG (default /etc/guardian/guardian.yml) lists the database
# (dbs[0].path = GUARDIAN_DB) and its replica; the arguments are the application.
set -eu
config="${GUARDIAN_CONFIG:-/etc/guardian/guardian.yml}"
db="${GUARDIAN_DB:?set GUARDIAN_DB to the database path of the configuration}"
guardian restore --config "$config" --if-db-not-exists --if-replica-exists "$db"
exec guardian run --config "$config" -- "$@"
