#!/usr/bin/env bash
# Benchmarks H1, H2 and idle RSS (issue 3). Prints figures; asserts nothing.
#   H1: /demo/hello through the threads pool vs a bare chi router, 64 connections, req/s ratio.
#   H2: /demo/io?ms=50 with threads=64: req/s against the ideal 64/0.05 = 1280.
#   RSS: idle tandem serve.
# Usage: bash bench/http.sh   (DURATION=10s by default; ONLY=h1 for H1 alone)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
build_tandem
(cd "$ROOT" && go build -o "$OUT/h1plain" ./bench/h1plain)

# Idle RSS: after start-up and a moment of quiet.
start_tandem idle TANDEM_LOG_LEVEL=warn
sleep 2
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$TANDEM_PID/status)
stop_tandem

# pair I URL_A URL_B: req/s of A and B, 64 connections each, A first when I is odd: whichever runs
# second tends to gain from the warm-up, so pairs alternate.
pair() {
  local a b
  if (( $1 % 2 )); then
    a=$(wrk_rps -t2 -c64 -d"$DURATION" "$2"); b=$(wrk_rps -t2 -c64 -d"$DURATION" "$3")
  else
    b=$(wrk_rps -t2 -c64 -d"$DURATION" "$3"); a=$(wrk_rps -t2 -c64 -d"$DURATION" "$2")
  fi
  echo "$a $b"
}

# H1: tandem vs the same router without the threads pool (bench/h1plain), access logs off in both.
# Five pairs, the order alternating within them, median ratio: single runs on a shared 2-core
# machine swing by +-10%, and whichever runs second in a pair tends to gain from the warm-up.
port=$(free_port)
"$OUT/h1plain" -addr 127.0.0.1:$port & plain_pid=$!
sleep 0.5
wrk -t2 -c64 -d2s "http://127.0.0.1:$port/demo/hello" >/dev/null   # warm-up
ratios=()
for i in 1 2 3 4 5; do
  start_tandem h1 TANDEM_LOG_LEVEL=warn TANDEM_SERVER_THREADS=64
  wrk -t2 -c64 -d2s "$HTTP_URL/demo/hello" >/dev/null   # warm-up
  read -r pool_rps plain_rps < <(pair "$i" "$HTTP_URL/demo/hello" "http://127.0.0.1:$port/demo/hello")
  stop_tandem
  ratios+=("$(ratio "$pool_rps" "$plain_rps")")
  echo "H1 pair $i: with the threads pool ${pool_rps} req/s, without ${plain_rps} req/s"
done
kill "$plain_pid"; wait "$plain_pid" 2>/dev/null || true
h1_median=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 3p)

if [ "${ONLY:-}" = h1 ]; then
  echo "H1 /demo/hello 64 conns: median ratio with / without the threads pool (same router) ${h1_median} of (${ratios[*]}) (target >= 0.95)"
  exit 0
fi

# Metrics cost on H1 (issue 5): the same router with and without the metrics middleware, three
# alternating pairs, median ratio.
mport=$(free_port)
"$OUT/h1plain" -addr 127.0.0.1:$mport -metrics=false & nometrics_pid=$!
"$OUT/h1plain" -addr 127.0.0.1:$port & plain_pid=$!
sleep 0.5
mratios=()
for i in 1 2 3; do
  read -r on off < <(pair "$i" "http://127.0.0.1:$port/demo/hello" "http://127.0.0.1:$mport/demo/hello")
  mratios+=("$(ratio "$on" "$off")")
  echo "metrics pair $i: with metrics ${on} req/s, without ${off} req/s"
done
kill "$plain_pid" "$nometrics_pid"; wait "$plain_pid" "$nometrics_pid" 2>/dev/null || true
m_median=$(printf '%s\n' "${mratios[@]}" | sort -n | sed -n 2p)

# H2
start_tandem h2 TANDEM_LOG_LEVEL=warn TANDEM_SERVER_THREADS=64
io_rps=$(wrk_rps -t2 -c64 -d"$DURATION" "$HTTP_URL/demo/io?ms=50")
stop_tandem

echo "H1 /demo/hello 64 conns: median ratio with / without the threads pool (same router) ${h1_median} of (${ratios[*]}) (target >= 0.95)"
echo "H2 /demo/io?ms=50 threads=64: ${io_rps} req/s, $(ratio "$io_rps" 1280) of the ideal 1280 (target >= 0.90)"
echo "metrics cost on /demo/hello: median ratio with / without the metrics middleware ${m_median} of (${mratios[*]}) (target >= 0.97)"
echo "idle RSS: $((rss_kb / 1024)) MiB (${rss_kb} kB; target < 25 MB)"
