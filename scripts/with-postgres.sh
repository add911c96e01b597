#!/usr/bin/env bash
# Run a command with SMKI_TEST_DATABASE_URL pointing at a PostgreSQL server on 127.0.0.1:5432.
# Uses the server that answers there; otherwise starts (or installs, then starts) Debian's cluster.
set -euo pipefail
host=127.0.0.1 port=5432
answers() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }
if ! answers; then
  if ! command -v pg_ctlcluster >/dev/null; then
    bash "$(dirname "$0")/system-deps.sh"
  fi
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    echo "no PostgreSQL cluster found; cannot run the PostgreSQL suite" >&2
    exit 1
  fi
  conf=/etc/postgresql/$version/main
  # Trust local TCP connections for the test user, as the CI machine's server does.
  if ! grep -q "smki-test" "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust # smki-test' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do answers && break; sleep 1; done
  answers || { echo "PostgreSQL did not start" >&2; exit 1; }
fi
export SMKI_TEST_DATABASE_URL="postgresql+psycopg://postgres@$host:$port/postgres"
echo "== PostgreSQL suite against $host:$port"
exec "$@"
