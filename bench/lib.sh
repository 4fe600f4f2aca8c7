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
trap stop_tandem EXIT

# wrk_rps ARGS...: runs wrk and prints its Requests/sec figure.
wrk_rps() {
  wrk "$@" | awk '/Requests\/sec/ {print $2}'
}

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.3f}' if b else 'n/a')" "$1" "$2"; }
