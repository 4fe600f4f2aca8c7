#!/usr/bin/env bash
# Benchmarks H1, H2 and idle RSS (issue 3), H1 at the defaults and slow bodies (issue 13). Prints
# figures; asserts nothing.
#   H1: /demo/hello through the threads pool vs the same router without it, 64 connections,
#       req/s ratio, access logs off in both.
#   H1 at the defaults: tandem with no configuration (log.level info, log.access errors, threads
#       auto) vs the same router without the pool (bench/h1plain) vs a plain chi router.
#   H2: /demo/io?ms=50 with threads=64: req/s against the ideal 64/0.05 = 1280.
#   RSS: idle tandem serve.
#   Slow bodies: 1,000 slowhttptest -B connections on POST /v1/jobs while a client enqueues.
# Usage: bash bench/http.sh   (DURATION=10s by default; ONLY=h1, ONLY=h1defaults or ONLY=slowbody
# for one part; BEFORE=path/to/an/older/tandem adds it to the last two, for before/after: not a
# TANDEM_ variable, which tandem would refuse as an unknown key)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
build_tandem
(cd "$ROOT" && go build -o "$OUT/h1plain" ./bench/h1plain)
# start_before NAME [VAR=value...]: start_tandem with the BEFORE binary, from $OUT: an older
# binary refuses the keys it does not know in the repository's ./config.yaml.
start_before() { pushd "$OUT" >/dev/null; TANDEM=$BEFORE start_tandem "$@"; popd >/dev/null; }

# h1_defaults: H1 at the defaults (issue 13). tandem as it starts with no configuration but the demo
# routes (log.level info, log.access errors, threads auto), against the same router without the
# pool (bench/h1plain) and a plain chi router (h1plain -bare), and BEFORE at the same
# defaults when set. All listen at once; five rounds, the order rotating, median req/s each.
h1_defaults() {
  local names=(tandem plain bare) urls=() pids=() p
  start_tandem h1d TANDEM_LOG_LEVEL=info; urls+=("$HTTP_URL/demo/hello"); pids+=("$TANDEM_PID")
  p=$(free_port); "$OUT/h1plain" -addr 127.0.0.1:$p & pids+=($!); urls+=("http://127.0.0.1:$p/demo/hello")
  p=$(free_port); "$OUT/h1plain" -bare -addr 127.0.0.1:$p & pids+=($!); urls+=("http://127.0.0.1:$p/demo/hello")
  if [ -n "${BEFORE:-}" ]; then
    start_before h1d-before TANDEM_LOG_LEVEL=info
    names+=(before); urls+=("$HTTP_URL/demo/hello"); pids+=("$TANDEM_PID")
  fi
  TANDEM_PID= # stopped below with the others
  sleep 0.5
  local n=${#names[@]} i j k
  for u in "${urls[@]}"; do wrk -t2 -c64 -d2s "$u" >/dev/null; done   # warm-up
  declare -A rps
  for i in 0 1 2 3 4; do
    for ((j = 0; j < n; j++)); do
      k=$(( (i + j) % n ))
      rps[${names[$k]}]+="$(wrk_rps -t2 -c64 -d"$DURATION" "${urls[$k]}") "
    done
    echo "H1 defaults round $((i + 1)):$(for nm in "${names[@]}"; do printf ' %s %s' "$nm" "$(echo ${rps[$nm]} | awk '{print $NF}')"; done)"
  done
  kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true
  local med=() line="H1 /demo/hello 64 conns at the defaults, median req/s:"
  for nm in "${names[@]}"; do
    med+=("$(printf '%s\n' ${rps[$nm]} | sort -n | sed -n 3p)")
    line+=" $nm ${med[-1]}"
  done
  echo "$line"
  echo "  tandem / plain (same router, no pool) $(ratio "${med[0]}" "${med[1]}"), tandem / bare chi $(ratio "${med[0]}" "${med[2]}"), plain / bare chi $(ratio "${med[1]}" "${med[2]}")$([ "$n" = 4 ] && echo ", tandem / before $(ratio "${med[0]}" "${med[3]}"), before / bare chi $(ratio "${med[3]}" "${med[2]}")")"
  echo "  access log written by tandem: $(grep -c '"msg":"request"' "$OUT/h1d.log" || true) lines$([ "$n" = 4 ] && echo ", by before: $(grep -c '"msg":"request"' "$OUT/h1d-before.log" || true) lines")"
}

# slow_bodies_one BINARY NAME CONNS: CONNS slowhttptest -B connections (issue 13's command) on
# POST /v1/jobs of a tandem at the defaults, and meanwhile 200 enqueues from a normal client, one
# at a time on one keep-alive connection: how many got 201, their median and slowest latency, and
# what the attack cost tandem in descriptors and memory.
slow_bodies_one() {
  local sh_pid
  if [ "$1" = "$TANDEM" ]; then start_tandem "$2" TANDEM_LOG_LEVEL=info; else start_before "$2" TANDEM_LOG_LEVEL=info; fi
  slowhttptest -B -c "$3" -i 10 -r 250 -s 8192 -t POST -f application/json -u "$HTTP_URL/v1/jobs" -l 30 -p 3 \
    >"$OUT/$2-slowhttptest.log" 2>&1 & sh_pid=$!
  sleep 6   # 1,000 connections at 250 a second: all open after 4 s
  local fds rss
  fds=$(ls /proc/$TANDEM_PID/fd | wc -l); rss=$(awk '/VmRSS/ {print $2}' /proc/$TANDEM_PID/status)
  python3 - "$HTTP_URL" <<'PY'
import http.client, statistics, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
lat, codes = [], {}
for _ in range(200):
    t = time.monotonic()
    c.request("POST", "/v1/jobs", body=b'{"kind":"noop"}', headers={"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    lat.append((time.monotonic() - t) * 1000)
    codes[r.status] = codes.get(r.status, 0) + 1
    if r.getheader("Connection", "").lower() == "close":
        c.close(); c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
print(f"  200 enqueues: status counts {codes}, median {statistics.median(lat):.1f} ms, slowest {max(lat):.1f} ms")
PY
  echo "  tandem during the attack: $fds open descriptors, RSS $((rss / 1024)) MiB"
  wait "$sh_pid" || true
  echo "  slowhttptest: $(sed 's/\x1b\[[0-9;]*m//g' "$OUT/$2-slowhttptest.log" | grep -E 'service available' | tail -1 | tr -s ' ')"
  stop_tandem
}
slow_bodies() {
  command -v slowhttptest >/dev/null || { echo "slow bodies: needs slowhttptest (apt-get install slowhttptest)"; return 0; }
  local c
  for c in 6 1000; do
    echo "slow bodies, $c slowhttptest -B connections on POST /v1/jobs, tandem at the defaults:"
    slow_bodies_one "$TANDEM" slowbody "$c"
    if [ -n "${BEFORE:-}" ]; then
      echo "slow bodies, $c connections, BEFORE at the defaults:"
      slow_bodies_one "$BEFORE" slowbody-before "$c"
    fi
  done
}
case "${ONLY:-}" in
  h1defaults) h1_defaults; exit 0 ;;
  slowbody) slow_bodies; exit 0 ;;
esac

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
h1_defaults
slow_bodies
