#!/usr/bin/env bash
# Jobs yield cores to HTTP (issue 16, jobs.yield_to_http). Prints figures; asserts nothing.
# jobs.concurrency 2 on the machine's cores, cpu jobs of n=$N rounds (about 15 ms of CPU each).
#   P99   GET /demo/hello at 200 requests/s by bench/load (16 clients, open loop) for $SECS s,
#         after $WARM s of the same load to let the controller settle: (1) no jobs; (2) a flood of
#         cpu jobs with yield_to_http true; (3) the same with false. Also the jobs/s during (2), (3).
#   IDLE  $JOBS cpu jobs drained with HTTP idle (enqueued and polled on the admin listener, which
#         the controller does not count as traffic): jobs/s with yield_to_http true and false.
# The machine is shared with other processes: ROUNDS rounds (default 3) run the cases interleaved,
# each round's ratios are printed, and the medians of the rounds' figures.
source "$(dirname "$0")/lib.sh"
build_tandem
(cd "$ROOT" && go build -o "$OUT/load" ./bench/load)
LOAD="$OUT/load"
N=${N:-100000}; SECS=${SECS:-10}; WARM=${WARM:-3}; JOBS=${JOBS:-1000}; ROUNDS=${ROUNDS:-3}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
succeeded() { curl -fsS "$ADMIN_URL/admin/api/v1/queues" | python3 -c "import json,sys; print(sum(q['succeeded'] for q in json.load(sys.stdin)['queues']))"; }
batch=$(python3 -c "import json; print(json.dumps({'jobs':[{'kind':'cpu','payload':{'n':$N}}]*100}))")
flood() { # flood COUNT: enqueues COUNT cpu jobs (in batches of 100) on the admin listener
  "$LOAD" -url "$ADMIN_URL/admin/api/v1/jobs/batch" -n $(($1 / 100)) -c 1 -body "$batch" >/dev/null
}
hello_p99() { # hello_p99: warm-up, then the measured run; prints "p99_ms jobs_per_s"
  "$LOAD" -method GET -url "$HTTP_URL/demo/hello" -rate 200 -n $((200 * WARM)) -c 16 >/dev/null
  local s0 t0 out s1 t1 probe
  s0=$(succeeded); t0=$(date +%s.%N)
  (sleep $((SECS / 2)); yield_state >"$OUT/yield.state") & probe=$!
  out=$("$LOAD" -method GET -url "$HTTP_URL/demo/hello" -rate 200 -n $((200 * SECS)) -c 16)
  wait "$probe"
  s1=$(succeeded); t1=$(date +%s.%N)
  [ "$(echo "$out" | field failed)" = 0 ] || echo "  ($(echo "$out" | field failed) requests failed)" >&2
  echo "$(echo "$out" | field p99_ms) $(python3 -c "print(round(($s1-$s0)/($t1-$t0)))")"
}
yield_state() { curl -fsS "$ADMIN_URL/admin/pools" | python3 -c "import json,sys; y=json.load(sys.stdin)['jobs'].get('yield') or {}; print(f\"limit {y.get('limit')}, {y.get('yields')} yields: {y.get('reason')}\")"; }
idle_rate() { # idle_rate: drains JOBS cpu jobs with HTTP idle; prints jobs/s
  local out
  out=$("$LOAD" -url "$ADMIN_URL/admin/api/v1/jobs/batch" -n $((JOBS / 100)) -c 1 -body "$batch" -drain "$JOBS")
  python3 -c "print(round($JOBS/$(echo "$out" | field drained_seconds), 1))"
}
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
flood_jobs=$((((WARM + SECS) * 300 / 100 + 1) * 100)) # more than 2 workers finish meanwhile
echo "yield: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (other processes share them); cpu jobs n=$N, $flood_jobs a flood"
none=(); on=(); off=(); ron=(); roff=(); idle_on=(); idle_off=()
for round in $(seq 1 "$ROUNDS"); do
  start_tandem yield TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=info TANDEM_LOG_ACCESS=off
  read -r p _ < <(hello_p99); none+=("$p")
  flood "$flood_jobs"
  read -r p r < <(hello_p99); on+=("$p"); ron+=("$r")
  state=$(cat "$OUT/yield.state")
  stop_tandem
  start_tandem yield-off TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_YIELD_TO_HTTP=false TANDEM_LOG_ACCESS=off
  flood "$flood_jobs"
  read -r p r < <(hello_p99); off+=("$p"); roff+=("$r")
  stop_tandem
  start_tandem yield-idle TANDEM_JOBS_CONCURRENCY=2 TANDEM_LOG_LEVEL=info
  idle_on+=("$(idle_rate)")
  idle_log=$(grep -c '"jobs yield to HTTP"' "$OUT/yield-idle.log" || true)
  stop_tandem
  start_tandem yield-idle-off TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_YIELD_TO_HTTP=false
  idle_off+=("$(idle_rate)")
  stop_tandem
  i=$((round - 1))
  echo "round $round: /demo/hello p99 at 200/s: no jobs ${none[$i]} ms; cpu flood, yield on ${on[$i]} ms ($(ratio "${on[$i]}" "${none[$i]}")x no jobs, jobs ${ron[$i]}/s), yield off ${off[$i]} ms ($(ratio "${off[$i]}" "${none[$i]}")x, jobs ${roff[$i]}/s); HTTP idle: ${idle_on[$i]} jobs/s yield on, ${idle_off[$i]} off ($(ratio "${idle_on[$i]}" "${idle_off[$i]}")x; $idle_log yields logged)"
  echo "  yield halfway through the flood: $state"
done
m0=$(med "${none[@]}"); m1=$(med "${on[@]}"); m2=$(med "${off[@]}"); i1=$(med "${idle_on[@]}"); i2=$(med "${idle_off[@]}")
echo "yield medians of $ROUNDS rounds: /demo/hello p99 no jobs $m0 ms, yield on $m1 ms = $(ratio "$m1" "$m0")x (target <= 2), yield off $m2 ms = $(ratio "$m2" "$m0")x;" \
  "jobs/s under that load: yield on $(med "${ron[@]}"), off $(med "${roff[@]}"); HTTP idle: yield on $i1 jobs/s, off $i2 = $(ratio "$i1" "$i2")x (target >= 0.90)"
