#!/usr/bin/env bash
# Job benchmarks (issue 4). Prints figures; asserts nothing. store.sync=always throughout.
#   J1  20,000 noop jobs over HTTP by 64 clients, concurrency 2: enqueue and end-to-end rates;
#       the same through /v1/jobs/batch (100 a batch); both again for 5 s under wrk, beside the
#       machine's ceiling and durable ceiling (bench/ceiling); in-process through the Go API,
#       beside its durable ceiling.
#   DRAIN a paused backlog of 50,000 noop jobs resumed, for prefetch 4, 16, 64 and 256 (and 64
#         unpinned).
#   J2  2,000 sleep jobs of 50 ms, concurrency 16, against the ideal 6.25 s.
#   P99 POST /v1/jobs latency at a steady 2,000 jobs/s.
#   SCALE (SCALE=1) J1 and start-up time with 1,000,000 finished + 100,000 waiting jobs.
source "$(dirname "$0")/lib.sh"
build_tandem
(cd "$ROOT" && go build -o "$OUT/load" ./bench/load)
LOAD="$OUT/load"
jq_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }


j1() { # j1 LABEL: runs J1 on the tandem already started; prints a line
  local out; out=$("$LOAD" -url "$HTTP_URL/v1/jobs" -n 20000 -c 64 -body '{"kind":"noop"}' -drain 20000)
  echo "J1 $1 HTTP: enqueue $(echo "$out" | jq_field rate | cut -d. -f1)/s, end to end $(python3 -c "print(int(20000/$(echo "$out" | jq_field drained_seconds)))")/s (targets 25000 and 15000)"
}

# j1_compare: J1 (bench/load, 20,000 noop jobs, 64 clients, concurrency 2, end to end) at the
# defaults, tuned (threads 64, prefetch 64) and on the durable ceiling (bench/ceiling -db -drain 66,
# driven by the same bench/load), ROUNDS rounds (default 3) with the order rotating, and the
# medians' ratios: figures from one run, as the defaults' target is a ratio to the others. BEFORE=
# path/to/an/older/tandem adds it at its defaults. Usage: ONLY=j1 bash bench/jobs.sh
j1_compare() {
  (cd "$ROOT" && go build -o "$OUT/ceiling" ./bench/ceiling)
  local names=(defaults tuned ceiling) i j k nm e2e
  [ -n "${BEFORE:-}" ] && names+=(before)
  local n=${#names[@]}
  declare -A got
  for ((i = 0; i < ${ROUNDS:-3}; i++)); do
    for ((j = 0; j < n; j++)); do
      k=$(( (i + j) % n )); nm=${names[$k]}
      case $nm in
        defaults) start_tandem j1 TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_MAX_PENDING=10000000 ;;
        tuned) start_tandem j1 TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64 ;;
        before) pushd "$OUT" >/dev/null; TANDEM=$BEFORE start_tandem j1-before TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_MAX_PENDING=10000000; popd >/dev/null ;;
        ceiling)
          rm -f "$OUT"/floor.db.*
          local cport; cport=$(free_port)
          "$OUT/ceiling" -addr 127.0.0.1:$cport -db "$OUT/floor.db" -drain 66 & TANDEM_PID=$!
          HTTP_URL=http://127.0.0.1:$cport
          for _ in $(seq 1 400); do curl -fsS "$HTTP_URL/v1/queues" >/dev/null 2>&1 && break; sleep 0.005; done ;;
      esac
      e2e=$("$LOAD" -url "$HTTP_URL/v1/jobs" -n 20000 -c 64 -body '{"kind":"noop"}' -drain 20000 | python3 -c "import json,sys; print(int(20000/json.load(sys.stdin)['drained_seconds']))")
      stop_tandem
      got[$nm]+="$e2e "
    done
    echo "J1 round $((i + 1)), end to end jobs/s:$(for nm in "${names[@]}"; do printf ' %s %s' "$nm" "$(echo ${got[$nm]} | awk '{print $NF}')"; done)"
  done
  rm -f "$OUT"/floor.db.*
  declare -A med
  local line="J1 median end to end jobs/s:"
  for nm in "${names[@]}"; do
    med[$nm]=$(printf '%s\n' ${got[$nm]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    line+=" $nm ${med[$nm]}"
  done
  echo "$line"
  echo "  defaults / tuned $(ratio "${med[defaults]}" "${med[tuned]}") (target >= 0.9), tuned / ceiling $(ratio "${med[tuned]}" "${med[ceiling]}") (target >= 0.7), defaults / ceiling $(ratio "${med[defaults]}" "${med[ceiling]}")$([ -n "${BEFORE:-}" ] && echo ", before / defaults $(ratio "${med[before]}" "${med[defaults]}")")"
}
if [ "${ONLY:-}" = j1 ]; then j1_compare; exit 0; fi

start_tandem j1 TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_JOBS_MAX_PENDING=10000000
j1 "defaults"
stop_tandem
# The two knobs that mattered for a flood of noop jobs: how many enqueue requests may wait on one
# group commit (threads, before enqueues lent their thread back) and how many jobs one lease takes
# (prefetch, before auto).
start_tandem j1 TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64
j1 "threads 64, prefetch 64"
noop100=$(python3 -c "import json; print(json.dumps({'jobs':[{'kind':'noop'}]*100}))")
out=$("$LOAD" -url "$HTTP_URL/v1/jobs/batch" -n 1000 -c 16 -body "$noop100" -drain 100000)
echo "J1 batch (100/request): enqueue $(python3 -c "print(int(100*$(echo "$out" | jq_field rate)))")/s (target 100000), 100000 drained end to end in $(echo "$out" | jq_field drained_seconds)s"
stop_tandem
# Go's GC runs each time the heap doubles; tandem's live heap is a few MB, so under a flood it runs
# often. GOGC=400 trades memory (RSS printed) for CPU, as the Go GC guide describes.
start_tandem j1 GOGC=400 TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64
j1 "threads 64, prefetch 64, GOGC=400"
echo "  RSS after it: $(awk '/VmRSS/ {print int($2/1024)}' /proc/$TANDEM_PID/status) MiB"
stop_tandem
# A pinned worker is locked to its OS thread: each wake-up for a job switches threads (docs/scaling.md).
start_tandem j1 TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64 TANDEM_JOBS_PIN_CPUS=false
j1 "threads 64, prefetch 64, pin_cpus false"
stop_tandem

# The same J1 driven by wrk, a C load generator: bench/load is Go's HTTP client and takes about as
# much CPU per request as tandem's HTTP side, on the same 2 cores. "ceiling" (bench/ceiling) answers
# a constant 201 with bare net/http under the same wrk: the most this machine serves. End to end
# runs from wrk's start until GET /v1/queues shows nothing waiting or running.
(cd "$ROOT" && go build -o "$OUT/ceiling" ./bench/ceiling)
post_lua() { # post_lua FILE BODY: a wrk script that POSTs the JSON BODY
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
    "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")" > "$OUT/$1"
}
post_lua one.lua '{"kind":"noop"}'
post_lua batch.lua "$noop100"
wait_empty() { # polls GET /v1/queues until nothing waits or runs; 12,000 polls, about 2 minutes
  for _ in $(seq 1 12000); do
    curl -fsS "$HTTP_URL/v1/queues" | grep -q '"scheduled":0,"ready":0,"prefetched":0,"running":0,"retrying":0' && return 0
    sleep 0.005
  done
  echo "queue not empty after 12,000 polls" >&2
}
wrk_j1() { # wrk_j1 LABEL PATH LUA CONNS JOBS_PER_REQUEST SECONDS: J1 on the tandem already started
  local t0 rps t1 done
  t0=$(date +%s.%N)
  rps=$(wrk_rps -t2 -c"$4" -d"$6"s -s "$OUT/$3" "$HTTP_URL$2")
  wait_empty
  t1=$(date +%s.%N)
  done=$(curl -fsS "$HTTP_URL/v1/queues" | python3 -c "import json,sys; print(json.load(sys.stdin)['queues'][0]['succeeded'])")
  echo "J1 wrk $1: enqueue $(python3 -c "print(int($rps*$5))")/s, end to end $(python3 -c "print(int(${done:-0}/($t1-$t0)))")/s"
}
"$OUT/ceiling" -addr 127.0.0.1:18082 & ceiling_pid=$!
sleep 0.3
echo "J1 wrk ceiling (bare net/http, constant 201): $(wrk_rps -t2 -c64 -d5s -s "$OUT/one.lua" http://127.0.0.1:18082/v1/jobs | cut -d. -f1) requests/s"
kill "$ceiling_pid"; wait "$ceiling_pid" 2>/dev/null || true
# The durable ceiling: the simplest queue on bbolt with fsync (bench/ceiling -db), one committer,
# each commit also finishing up to 66 ready jobs (concurrency 2 + prefetch 64) as if leased, run
# and acknowledged at once. No validation, router or lease commit: the most J1 can reach here.
rm -f "$OUT"/floor.db.*
"$OUT/ceiling" -addr 127.0.0.1:18082 -db "$OUT/floor.db" -drain 66 & ceiling_pid=$!
sleep 0.3
t0=$(date +%s.%N)
rps=$(wrk_rps -t2 -c64 -d5s -s "$OUT/one.lua" http://127.0.0.1:18082/v1/jobs)
t1=$(date +%s.%N)
finished=$(curl -fsS http://127.0.0.1:18082/finished | cut -d' ' -f1)
echo "J1 wrk durable ceiling (bare net/http + bbolt group commit, fsync): enqueue ${rps%.*}/s, finished $(python3 -c "print(int($finished/($t1-$t0)))")/s while enqueueing"
kill "$ceiling_pid"; wait "$ceiling_pid" 2>/dev/null || true
rm -f "$OUT"/floor.db.*
echo "J1 in-process durable ceiling (bbolt group commit, fsync): $("$OUT/ceiling" -db "$OUT/floor.db" -drain 66 -jobs 100000)"
rm -f "$OUT"/floor.db.*
start_tandem j1wrk TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64
wrk_j1 "threads 64, prefetch 64, 64 connections, 5 s" /v1/jobs one.lua 64 1 5
stop_tandem
start_tandem j1wrk TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64
# 2 s only: batches enqueue ~15 times faster than the queue drains.
wrk_j1 "batch (100/request), 32 connections, 2 s" /v1/jobs/batch batch.lua 32 100 2
stop_tandem

# DRAIN: a backlog of 50,000 noop jobs, enqueued while the queue is paused, then resumed: how fast
# concurrency 2 empties it for each prefetch, the default auto first (docs/scaling.md). A lease
# waits for a group commit, so tiny jobs drain at about concurrency + prefetch per commit.
for run in auto:true 4:true 16:true 64:true 256:true 64:false; do
  pf=${run%:*} pin=${run#*:}
  start_tandem drain TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_JOBS_PREFETCH=$pf TANDEM_JOBS_PIN_CPUS=$pin
  curl -fsS -XPOST "$ADMIN_URL/admin/queues/default/pause" >/dev/null
  "$LOAD" -url "$HTTP_URL/v1/jobs/batch" -n 500 -c 8 -body "$noop100" >/dev/null
  t0=$(date +%s.%N)
  curl -fsS -XPOST "$ADMIN_URL/admin/queues/default/resume" >/dev/null
  wait_empty
  t1=$(date +%s.%N)
  echo "DRAIN 50,000 noop jobs, concurrency 2, prefetch $pf, pin_cpus $pin: $(python3 -c "print(int(50000/($t1-$t0)))") jobs/s"
  stop_tandem
done

echo "J1 in-process (Go API):"
(cd "$ROOT" && go test -run XXX -bench BenchmarkEndToEnd -benchtime 50000x ./jobs/ | grep -E 'jobs/s')

start_tandem j2 TANDEM_JOBS_CONCURRENCY=16 TANDEM_LOG_LEVEL=warn
batch=$(python3 -c "import json; print(json.dumps({'jobs':[{'kind':'sleep','payload':{'ms':50}}]*100}))")
secs=$("$LOAD" -url "$HTTP_URL/v1/jobs/batch" -n 20 -c 4 -body "$batch" -drain 2000 | jq_field drained_seconds)
echo "J2 2000 x sleep 50ms, concurrency 16: ${secs}s, ideal 6.25s, ratio $(ratio 6.25 "$secs") (target >= 0.90)"
stop_tandem

# An enqueue lends its thread back while its group commit is on disk (pool.Wait, server.parked),
# so the default 5 threads carry the same enqueues as 64.
for t in auto 64; do
  start_tandem p99 TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_SERVER_THREADS=$t
  out=$("$LOAD" -url "$HTTP_URL/v1/jobs" -n 20000 -c 64 -rate 2000 -body '{"kind":"noop"}')
  echo "P99 POST /v1/jobs at 2000/s, threads $t: $(echo "$out" | jq_field rate | cut -d. -f1)/s done, p50 $(echo "$out" | jq_field p50_ms) ms, p99 $(echo "$out" | jq_field p99_ms) ms (target <= 10 ms)"
  stop_tandem
done

if [ "${SCALE:-0}" = 1 ]; then
  cfg="$OUT/scale.yaml"
  printf 'jobs:\n  queues:\n    default: {weight: 1}\n    parked: {weight: 1}\n' > "$cfg"
  start_tandem scale TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64 --config "$cfg"
  curl -fsS -XPOST -H 'Content-Type: application/json' -d '{}' "$ADMIN_URL/admin/queues/parked/pause" >/dev/null
  many=$(python3 -c "import json; print(json.dumps({'jobs':[{'kind':'noop'}]*1000}))")
  parked=$(python3 -c "import json; print(json.dumps({'jobs':[{'kind':'noop','queue':'parked'}]*1000}))")
  "$LOAD" -url "$HTTP_URL/v1/jobs/batch" -n 100 -c 8 -body "$parked" >/dev/null
  secs=$("$LOAD" -url "$HTTP_URL/v1/jobs/batch" -n 1000 -c 8 -body "$many" -drain 1000000 -max 20m | jq_field drained_seconds)
  echo "seeded 1,100,000 jobs; enqueueing and draining 1,000,000 took ${secs}s"
  stop_tandem
  start_tandem_keep scale TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64 --config "$cfg"
  echo "start-up with 1,000,000 finished + 100,000 waiting: ${TANDEM_READY_SECS}s from exec to /readyz answering (target < 1 s)"
  # Full store and empty store back to back, twice, so the ratio is not the machine's drift.
  for round in 1 2; do
    j1 "1M finished + 100k waiting (round $round)"
    stop_tandem
    start_tandem scale-empty TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64 --config "$cfg"
    j1 "empty store, same settings (round $round)"
    stop_tandem
    [ "$round" = 2 ] || start_tandem_keep scale TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=warn TANDEM_JOBS_MAX_PENDING=10000000 TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64 --config "$cfg"
  done
fi
