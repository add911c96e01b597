#!/usr/bin/env bash
# The closing-note benchmark set, in one command, for a quiet machine (nothing else running):
#   bash scripts/quiet-benchmarks.sh [LOG]        (default LOG: benchmarks/out/quiet-benchmarks.log)
# Each bench measures its own openssl limit; the log records the time and load average around
# every command, so a figure taken on a busy machine can be told apart. PostgreSQL benches run
# against fresh databases on 127.0.0.1:5432 (trust auth), started by scripts/with-postgres.sh's
# rules when none answers; set SMKI_BENCH_SKIP_PG=1 to run the SQLite half only.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${1:-benchmarks/out/quiet-benchmarks.log}
mkdir -p "$(dirname "$log")"
smki=.venv/bin/smki
pg=postgresql+psycopg://postgres@127.0.0.1:5432
export PGOPTIONS='-c client_min_messages=warning'  # no NOTICE for a database that is not there yet
export SMKI_LOG_LEVEL=warning  # the benches' servers would log every poll; their figures are on stdout

created=()
drop_created() {
  for name in "${created[@]}"; do
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $name" >/dev/null 2>&1
  done
}
trap drop_created EXIT

fresh_db() {  # a new, empty database (dropped at exit); sets $url
  local name="smki_quiet_$1_$$"
  created+=("$name")
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
  url="$pg/$name"
}

run() {  # run one bench, logging the command, its output, the load average and the time around it
  {
    echo "### $*"
    echo "# start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  } >>"$log"
  "$@" >>"$log" 2>&1
  local rc=$?
  echo "# end   $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) exit $rc" >>"$log"
  echo >>"$log"
}

: >"$log"
run $smki bench cli --runs 7
run $smki bench issue --count 10000 --count 100000
run $smki bench batch-cpu --count 50000 --screens --rounds 2
run $smki bench http --csrs 10000 --csrs 50000 --peer cfssl
run $smki bench store-size --records 10000 --records 1000000 --requests 100
run $smki bench service-phases --csrs 50000
run $smki bench http --nightly
if [ "${SMKI_BENCH_SKIP_PG:-0}" != 1 ] && bash scripts/with-postgres.sh true >/dev/null; then
  # bench issue re-creates its database for each size: it initialises a CA in the database it is given
  fresh_db issue && run $smki bench issue --count 10000 --count 100000 --database-url "$url"
  fresh_db screens && run $smki bench batch-cpu --count 50000 --screens --rounds 2 --database-url "$url"
  fresh_db http && run $smki bench http --csrs 10000 --csrs 50000 --peer cfssl --database-url "$url"
  fresh_db phases && run $smki bench service-phases --csrs 50000 --database-url "$url"
  fresh_db storesize && run $smki bench store-size --records 10000 --records 1000000 --requests 100 --database-url "$url"
  fresh_db nightly && run $smki bench http --nightly --database-url "$url"
  fresh_db devices && run $smki bench devices --count 1000000 --database-url "$url"
  fresh_db forms && run $smki bench sql-forms --database-url "$url"
fi
echo "written: $log"
