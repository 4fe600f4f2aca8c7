# Shared shell functions for bench/ scripts: build tandem, start it on loopback, stop it by PID.
# Sourced, not run.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
mkdir -p "$OUT"
TANDEM=${TANDEM:-$OUT/tandem}

build_tandem() {
  (cd "$ROOT" && go build -trimpath -o "$TANDEM" .)
}

# free_port prints a free loopback TCP port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_tandem NAME [VAR=value...] [flags...]: starts tandem serve in the background with a fresh
# store, sets HTTP_URL, ADMIN_URL, TANDEM_PID; waits until /readyz answers and sets
# TANDEM_READY_SECS to the time from starting the process to that answer. start_tandem_keep
# keeps the store of an earlier run.
start_tandem() { rm -rf "$OUT/$1.db"; start_tandem_keep "$@"; }
start_tandem_keep() {
  local name=$1; shift
  local hp ap envs=() flags=()
  for a in "$@"; do case "$a" in *=*) [[ "$a" == --* ]] && flags+=("$a") || envs+=("$a") ;; *) flags+=("$a") ;; esac; done
  hp=$(free_port); ap=$(free_port)
  TANDEM_T0=$(date +%s.%N) # process start, for start-up figures (after the port picking)
  env TANDEM_SERVER_ADDR=127.0.0.1:$hp TANDEM_ADMIN_ADDR=127.0.0.1:$ap \
      TANDEM_STORE_PATH="$OUT/$name.db" TANDEM_LOG_LEVEL=warn TANDEM_SERVER_DEMO_ROUTES=true "${envs[@]}" \
      "$TANDEM" serve "${flags[@]}" >"$OUT/$name.log" 2>&1 &
  TANDEM_PID=$!
  HTTP_URL=http://127.0.0.1:$hp
  ADMIN_URL=http://127.0.0.1:$ap
  for _ in $(seq 1 2000); do
    if curl -fsS "$HTTP_URL/readyz" >/dev/null 2>&1; then
      TANDEM_READY_SECS=$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$TANDEM_T0" "$(date +%s.%N)")
      return 0
    fi
    sleep 0.005
  done
  echo "tandem $name did not start; log:" >&2; cat "$OUT/$name.log" >&2; return 1
}

stop_tandem() {
  [ -n "${TANDEM_PID:-}" ] || return 0
  kill -TERM "$TANDEM_PID" 2>/dev/null || true
  wait "$TANDEM_PID" 2>/dev/null || true
  TANDEM_PID=
}

# start_replicas N NAME [VAR=value...] [flags...]: starts N tandem serve processes on the one
# Postgres database start_postgres made (store.backend postgres, store.url PG_URL), each with its
# own node.name NAME-i and ports, one after the other (the first applies the migrations). Sets the
# arrays REPLICA_PIDS, REPLICA_HTTP, REPLICA_ADMIN and HTTP_URLS (every replica's POST /v1/jobs,
# comma-separated, for bench/load -urls). start_replica NAME [...] adds one more.
start_replicas() {
  local n=$1; shift
  REPLICA_PIDS=(); REPLICA_HTTP=(); REPLICA_ADMIN=(); HTTP_URLS=
  for i in $(seq 1 "$n"); do start_replica "$@"; done
}
start_replica() {
  local name=$1; shift
  local i=$((${#REPLICA_PIDS[@]} + 1))
  TANDEM_PID= # start_tandem_keep sets it; the replicas are stopped by stop_replicas
  start_tandem_keep "$name-$i" TANDEM_STORE_BACKEND=postgres TANDEM_STORE_URL="$PG_URL" TANDEM_NODE_NAME="$name-$i" "$@"
  REPLICA_PIDS+=("$TANDEM_PID"); REPLICA_HTTP+=("$HTTP_URL"); REPLICA_ADMIN+=("$ADMIN_URL")
  HTTP_URLS=$(IFS=,; for u in "${REPLICA_HTTP[@]}"; do printf '%s/v1/jobs,' "$u"; done); HTTP_URLS=${HTTP_URLS%,}
  TANDEM_PID=
}
# stop_replicas: SIGTERM to every replica still running, then waits for each.
stop_replicas() {
  local pid
  for pid in "${REPLICA_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${REPLICA_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  REPLICA_PIDS=(); REPLICA_HTTP=(); REPLICA_ADMIN=(); HTTP_URLS=
}
REPLICA_PIDS=()

# start_postgres: a Postgres of its own for a bench run, as the tests start theirs: initdb + pg_ctl
# from /usr/lib/postgresql/*/bin (the newest), run as user postgres when we are root, a data
# directory under a temp dir, TCP on a free loopback port only. Durable as a production server:
# fsync, synchronous_commit and full_page_writes on. Sets PG_URL (database postgres), PG_BASE
# (the URL without a database), PG_BIN, PG_DIR; stop_postgres stops it (pg_ctl stop -m fast) and
# removes the directory.
start_postgres() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "${PG_BIN:-}/initdb" ] || { echo "no Postgres: /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)" >&2; return 1; }
  PG_DIR=$(mktemp -d /tmp/tandem-bench-pg.XXXXXX)
  local as=() port
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR"; as=(runuser -u postgres --); fi
  PG_AS=("${as[@]}")
  port=$(free_port)
  "${as[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 ||
    { cat "$PG_DIR/initdb.log" >&2; return 1; }
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PG_DIR -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=300" >/dev/null ||
    { cat "$PG_DIR/postgres.log" >&2; return 1; }
  PG_BASE=postgres://postgres@127.0.0.1:$port
  PG_URL="$PG_BASE/postgres?sslmode=disable"
}
stop_postgres() {
  [ -n "${PG_DIR:-}" ] || return 0
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  PG_DIR=
}
# psql_c SQL: runs one statement on PG_URL and prints the bare result.
psql_c() { "$PG_BIN/psql" "$PG_URL" -XAtqc "$1"; }
# pg_fresh_db NAME: drops and creates database NAME and points PG_URL at it, so each run starts
# from an empty schema and never counts an earlier run's rows.
pg_fresh_db() {
  PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" "$PG_BASE/postgres?sslmode=disable" -XAtq -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
  PG_URL="$PG_BASE/$1?sslmode=disable"
}

cleanup() { stop_tandem; stop_replicas; stop_postgres; }
trap cleanup EXIT

# wrk_rps ARGS...: runs wrk and prints its Requests/sec figure.
wrk_rps() {
  wrk "$@" | awk '/Requests\/sec/ {print $2}'
}

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.3f}' if b else 'n/a')" "$1" "$2"; }
