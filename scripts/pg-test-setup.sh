#!/usr/bin/env bash
# Makes a local PostgreSQL ready for the store's conformance tests: installs Debian's
# postgresql if missing, starts its cluster, creates the superuser role `kato` (password
# `kato`) and prints the export line the tests read. Idempotent; run as root.
set -euo pipefail

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

# The newest installed cluster; Debian's package creates `main` on install.
read -r version cluster status < <(pg_lsclusters --no-header | awk '{print $1, $2, $4}' | sort -V | tail -n 1) || true
if [[ -z "${version:-}" ]]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    cluster=main
    pg_createcluster "$version" "$cluster" >&2
    status=down
fi
if [[ "$status" != online* ]]; then
    pg_ctlcluster "$version" "$cluster" start >&2
fi

# Wait for the server to accept connections (a fresh start takes a moment).
for _ in $(seq 1 50); do
    if su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done

if [[ "$(su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'kato'\"")" != 1 ]]; then
    su postgres -c "psql -qc \"CREATE ROLE kato LOGIN SUPERUSER PASSWORD 'kato'\"" >&2
fi

echo "export KATO_TEST_DATABASE_URL=postgres://kato:kato@127.0.0.1:5432/postgres"
