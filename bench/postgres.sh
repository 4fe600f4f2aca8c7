#!/usr/bin/env bash
# Postgres benchmarks (issue 15). Prints figures; asserts nothing. One Postgres of its own for the
# whole run (lib.sh start_postgres: durable, fsync and synchronous_commit on), a fresh database for
# each system and each run.
#   RIVER  J1 on River v0.51.2 (bench/river): 20,000 noop jobs, 8 in-process inserters,
#          MaxWorkers 2, FetchCooldown 1 ms; enqueue and end-to-end rates.
#   BBOLT  the same J1 on one tandem on bbolt, for scale.
#   PG-J1  J1 on tandem with store.backend postgres: 20,000 noop jobs over HTTP from 64 clients
#          split round robin over 1, 2 and 3 replicas on the one database, concurrency 2 each;
#          each against River's (targets: one replica >= 5,000 jobs/s and >= 3x River; 3 replicas
#          more than 1).
#   ADD    a 20,000-job backlog queued (paused) with one replica running, resumed; a second
#          replica started once 5,000 are done: drain rate before and after.
#   KILL   the same backlog drained by 3 replicas; one killed with kill -9 once 5,000 are done:
#          the others finish it, the dead one's leased jobs after jobs.rescue_after (5s here).
# ADD and KILL write bench/out/postgres/*.csv (GET /v1/queues every 50 ms) and, with gnuplot,
# docs/img/pg-*.png. RUNS=3 (default) repeats RIVER and PG-J1 and prints each run and the median.
# Usage: bash bench/postgres.sh   (about 5 minutes on 2 cores)
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-3}
DATA="$OUT/postgres"; IMG="$ROOT/docs/img"
mkdir -p "$DATA"
(cd "$ROOT/bench/river" && go build -o "$OUT/river" .)
(cd "$ROOT" && go build -o "$OUT/load" ./bench/load)
LOAD="$OUT/load"
jq_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
median() { python3 -c "import statistics,sys; print(int(statistics.median(float(a) for a in sys.argv[1:])))" "$@"; }
start_postgres
echo "Postgres: $("$PG_BIN/postgres" --version), fsync $(psql_c 'show fsync'), synchronous_commit $(psql_c 'show synchronous_commit'); load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"

river_e2e=(); river_enq=()
for run in $(seq 1 "$RUNS"); do
  pg_fresh_db river
  out=$("$OUT/river" -url "$PG_URL" -n 20000 -inserters 8 -workers 2 -cooldown 1ms)
  e2e=$(echo "$out" | jq_field end_to_end_rate | cut -d. -f1)
  river_e2e+=("$e2e"); river_enq+=("$(echo "$out" | jq_field enqueue_rate)")
  echo "RIVER J1 run $run: enqueue $(echo "$out" | jq_field enqueue_rate | cut -d. -f1)/s, end to end ${e2e}/s"
done
RIVER=$(median "${river_e2e[@]}")
echo "RIVER J1 median: enqueue $(median "${river_enq[@]}")/s, end to end ${RIVER}/s"

if ! grep -q '^  backend:' "$ROOT/config.yaml"; then
  echo "tandem has no store.backend yet (config.yaml): the tandem-on-Postgres part is skipped"
  exit 0
fi
build_tandem
# tandem at its defaults (threads and prefetch auto, issue 16), concurrency 2 as River's
# MaxWorkers; TUNED=1 adds J1's old tuned settings (threads 64, prefetch 64) on every replica.
PGENV=(TANDEM_JOBS_CONCURRENCY=2 TANDEM_JOBS_MAX_PENDING=10000000)
# LEASED_MAX: the most jobs one replica holds leased, concurrency + the prefetch bound
# (jobs.prefetch_max 256, or 64 tuned): what a killed replica leaves for the rescue.
LEASED_MAX=$((2 + 256))
if [ -n "${TUNED:-}" ]; then PGENV+=(TANDEM_SERVER_THREADS=64 TANDEM_JOBS_PREFETCH=64); LEASED_MAX=$((2 + 64)); fi

# The same J1 on one tandem with the default bbolt store (sync always), for scale.
rates=()
for run in $(seq 1 "$RUNS"); do
  start_tandem pg-bbolt "${PGENV[@]}"
  out=$("$LOAD" -url "$HTTP_URL/v1/jobs" -n 20000 -c 64 -body '{"kind":"noop"}' -drain 20000)
  rates+=("$(python3 -c "print(int(20000/$(echo "$out" | jq_field drained_seconds)))")")
  stop_tandem
done
BBOLT=$(median "${rates[@]}")
echo "BBOLT J1 one tandem on bbolt, median end to end: ${BBOLT}/s (runs: ${rates[*]})"

: > "$DATA/replicas.dat"
for n in 1 2 3; do
  rates=(); enq=()
  for run in $(seq 1 "$RUNS"); do
    pg_fresh_db tandem
    start_replicas "$n" pg "${PGENV[@]}"
    out=$("$LOAD" -urls "$HTTP_URLS" -n 20000 -c 64 -body '{"kind":"noop"}' -drain 20000)
    e2e=$(python3 -c "print(int(20000/$(echo "$out" | jq_field drained_seconds)))")
    rates+=("$e2e"); enq+=("$(echo "$out" | jq_field rate)")
    echo "PG-J1 $n replica(s) run $run: enqueue $(echo "$out" | jq_field rate | cut -d. -f1)/s, end to end ${e2e}/s"
    stop_replicas
  done
  m=$(median "${rates[@]}")
  echo "$n $m $RIVER $BBOLT" >> "$DATA/replicas.dat"
  echo "PG-J1 $n replica(s) median: enqueue $(median "${enq[@]}")/s, end to end ${m}/s, $(ratio "$m" "$RIVER") x River (targets: 1 replica >= 5000/s and >= 3x)"
done

noop100=$(python3 -c "import json; print(json.dumps({'jobs':[{'kind':'noop'}]*100}))")
# backlog NAME: a paused queue of 20,000 noop jobs on the replicas already started, then a
# watcher on the first one (bench/load -n 0 -csv) in the background and the queue resumed.
backlog() {
  curl -fsS -XPOST "${REPLICA_ADMIN[0]}/admin/queues/default/pause" >/dev/null
  "$LOAD" -url "${REPLICA_HTTP[0]}/v1/jobs/batch" -n 200 -c 8 -body "$noop100" >/dev/null
  "$LOAD" -url "${REPLICA_HTTP[0]}/v1/jobs" -n 0 -drain 20000 -max 3m -csv "$DATA/$1.csv" -every 50ms >"$DATA/$1.json" &
  WATCH_PID=$!
  sleep 0.3 # the watcher's base count and first sample come before the resume
  echo "resume $(date +%s.%N)" > "$DATA/$1.events"
  curl -fsS -XPOST "${REPLICA_ADMIN[0]}/admin/queues/default/resume" >/dev/null
}
# succeeded_now: the jobs succeeded in every queue (grep and awk: a python3 per poll would lag).
succeeded_now() { curl -fsS "${REPLICA_HTTP[0]}/v1/queues" | grep -o '"succeeded":[0-9]*' | awk -F: '{n += $2} END {print n + 0}'; }
wait_succeeded() { # wait_succeeded N: polls until N jobs succeeded (or about 3 minutes)
  for _ in $(seq 1 18000); do [ "$(succeeded_now)" -ge "$1" ] && return 0; sleep 0.01; done
}
# rates NAME: the drain rate between resume and the event (a replica ready, or killed), and after
# it, from the CSV; the seconds from resume to the end of the drain, and from the event to it; the
# rate after the event until at most LEASED_MAX jobs wait, and the seconds to that moment.
rates() {
  python3 - "$DATA/$1.csv" "$DATA/$1.events" "$LEASED_MAX" <<'PY'
import csv, sys
rows = [(float(r["unix_seconds"]), int(r["succeeded"]), int(r["waiting"])) for r in csv.DictReader(open(sys.argv[1]))]
ev = dict(l.split() for l in open(sys.argv[2]))
t0, t1 = float(ev["resume"]), float(ev.get("ready", ev["event"]))  # a replica added counts once ready
base = rows[0][1]
def at(t):  # succeeded at time t, from the nearest sample at or before it
    return max([s for (u, s, _) in rows if u <= t] or [base])
end = next((u for (u, s, _) in rows if s - base >= 20000), rows[-1][0])
before = (at(t1) - base) / (t1 - t0)
after = (base + 20000 - at(t1)) / (end - t1) if end > t1 else float("nan")
# Until no more than one replica's leases (LEASED_MAX) wait: the rate without the wait for a
# rescue.
t66, s66 = next(((u, s) for (u, s, w) in rows if u > t1 and w <= int(sys.argv[3])), (end, base + 20000))
live = (s66 - at(t1)) / (t66 - t1) if t66 > t1 else float("nan")
print(f"{before:.0f} {after:.0f} {end - t0:.1f} {end - t1:.1f} {live:.0f} {t66 - t1:.1f}")
PY
}

pg_fresh_db tandem
start_replicas 1 add "${PGENV[@]}"
backlog add
wait_succeeded 5000
start_replica add "${PGENV[@]}"
# TANDEM_T0: the second replica's exec (lib.sh); now: its /readyz answered.
printf 'event %s\nready %s\n' "$TANDEM_T0" "$(date +%s.%N)" >> "$DATA/add.events"
wait "$WATCH_PID" || echo "ADD: the backlog did not drain (see $DATA/add.json)"
read -r before after total _ _ _ <<<"$(rates add)"
echo "ADD 20,000 backlog: 1 replica ${before} jobs/s; after a 2nd started (ready in ${TANDEM_READY_SECS}s) ${after} jobs/s; drained in ${total}s"
stop_replicas

pg_fresh_db tandem
start_replicas 3 kill "${PGENV[@]}" TANDEM_JOBS_RESCUE_AFTER=5s
backlog kill
wait_succeeded 5000
echo "event $(date +%s.%N)" >> "$DATA/kill.events"
kill -KILL "${REPLICA_PIDS[2]}"; wait "${REPLICA_PIDS[2]}" 2>/dev/null || true
REPLICA_PIDS=("${REPLICA_PIDS[@]:0:2}") # stop_replicas must not signal the dead one's PID again
wait "$WATCH_PID" || echo "KILL: the backlog did not drain (see $DATA/kill.json)"
read -r before after total tail live t66 <<<"$(rates kill)"
# Past rescue_after (5s), the last jobs were the dead replica's leases, rescued; before it, none of
# its leases had committed (a lease whose transaction dies with its process leaves its jobs ready).
if python3 -c "import sys; sys.exit(0 if float('$tail') >= 5 else 1)"; then
  last="the last job (one the dead replica had leased, rescued after jobs.rescue_after 5s) ${tail}s after the kill"
else
  last="the last job ${tail}s after the kill: none waited for a rescue (the dead replica held no committed lease)"
fi
echo "KILL 20,000 backlog: 3 replicas ${before} jobs/s; after kill -9 of one, 2 replicas ${live} jobs/s until at most ${LEASED_MAX} waited (${t66}s after the kill), ${last}; drained in ${total}s"
echo "  succeeded $(succeeded_now) of 20000; $(psql_c "SELECT count(*) FROM tandem_jobs WHERE attempted_by ? 'kill-3'") attempted by the killed replica, $(psql_c "SELECT count(*) FROM tandem_jobs WHERE attempt > 1") with more than one attempt"
stop_replicas
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

if ! command -v gnuplot >/dev/null; then
  echo "no gnuplot (apt-get install gnuplot-nox): CSVs in $DATA, no plots"
  exit 0
fi
mkdir -p "$IMG"
# Time from the resume, in seconds, for each backlog CSV.
for s in add kill; do
  t0=$(awk '$1=="resume" {print $2}' "$DATA/$s.events")
  awk -F, -v t0="$t0" 'NR>1 {printf "%.3f %d %d\n", $1-t0, $2, $3}' "$DATA/$s.csv" > "$DATA/$s.dat"
  awk -v t0="$t0" '$1=="event" {printf "%.3f\n", $2-t0}' "$DATA/$s.events" > "$DATA/$s.event"
  awk -v t0="$t0" '$1=="ready" {printf "%.3f\n", $2-t0}' "$DATA/$s.events" > "$DATA/$s.ready"
done
gnuplot <<GP
set terminal pngcairo size 900,420 font ",10" noenhanced
set grid; set key top left
set output "$IMG/pg-replicas.png"
set title "J1 end to end on one Postgres: tandem replicas against River (2 cores)"
set xlabel "tandem replicas"; set ylabel "jobs/s"; set xtics 1; set xrange [0.5:3.5]; set yrange [0:*]; set key below
plot "$DATA/replicas.dat" u 1:2 w lp lw 2 t "tandem on Postgres (64 HTTP clients)", "$DATA/replicas.dat" u 1:3 w l dt 2 t "River v0.51.2 (8 in-process inserters)", "$DATA/replicas.dat" u 1:4 w l dt 3 t "one tandem on bbolt (64 HTTP clients)"
set xrange [*:*]; set xtics autofreq; set key center right; set xlabel "seconds from resume"; set ylabel "jobs"
set output "$IMG/pg-backlog-add.png"
set key center right
set title "A 20,000-job backlog on one replica: a second starts at the dashed line, ready at the dotted one"
set arrow 1 from $(cat "$DATA/add.event"), graph 0 to $(cat "$DATA/add.event"), graph 1 nohead dt 2
set arrow 2 from $(cat "$DATA/add.ready"), graph 0 to $(cat "$DATA/add.ready"), graph 1 nohead dt 3
plot "$DATA/add.dat" u 1:3 w l lw 2 t "waiting", "$DATA/add.dat" u 1:(\$2-$(head -1 "$DATA/add.dat" | cut -d' ' -f2)) w l lw 2 t "succeeded"
set output "$IMG/pg-backlog-kill.png"
set title "A 20,000-job backlog on 3 replicas: one killed (kill -9) at the dashed line, jobs.rescue_after 5s"
unset arrow 2
set arrow 1 from $(cat "$DATA/kill.event"), graph 0 to $(cat "$DATA/kill.event"), graph 1 nohead dt 2
plot "$DATA/kill.dat" u 1:3 w l lw 2 t "waiting", "$DATA/kill.dat" u 1:(\$2-$(head -1 "$DATA/kill.dat" | cut -d' ' -f2)) w l lw 2 t "succeeded"
GP
echo "plots: docs/img/pg-replicas.png, docs/img/pg-backlog-add.png, docs/img/pg-backlog-kill.png"
