#!/usr/bin/env bash
# Regenerates docs/scaling.md's figures: throughput and p99 against server.threads for the I/O-bound
# and CPU-bound demo routes, and jobs/s against jobs.concurrency for cpu and sleep jobs.
# Writes bench/out/scaling/*.dat, docs/img/*.png (gnuplot) and prints a Markdown table.
# Usage: bash bench/scaling.sh   (about 3 minutes; DURATION=5s per point by default)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5s}
command -v wrk >/dev/null || { echo "needs wrk"; exit 1; }
command -v gnuplot >/dev/null || { echo "needs gnuplot (apt-get install gnuplot-nox)"; exit 1; }
build_tandem
DATA="$OUT/scaling"; IMG="$ROOT/docs/img"
mkdir -p "$DATA" "$IMG"

# wrk_point URL: prints "req/s p99_ms" from wrk --latency.
wrk_point() {
  wrk -t2 -c64 -d"$DURATION" --latency "$1" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
    END {print rps, p99}'
}

for route in io cpu; do
  url_path="/demo/io?ms=50"; [ "$route" = cpu ] && url_path="/demo/cpu?n=20000"
  : > "$DATA/http-$route.dat"
  for threads in 1 2 4 8 16 32 64; do
    start_tandem scale-http TANDEM_SERVER_THREADS=$threads TANDEM_SERVER_BACKLOG=4096 TANDEM_SERVER_QUEUE_TIMEOUT=30s
    echo "$threads $(wrk_point "$HTTP_URL$url_path")" >> "$DATA/http-$route.dat"
    stop_tandem
  done
done

succeeded() { curl -fsS "$HTTP_URL/v1/queues" | python3 -c "import json,sys; print(sum(q['succeeded'] for q in json.load(sys.stdin)['queues']))"; }
for kind in cpu sleep; do
  payload='{"n":20000}'; n=400; [ "$kind" = sleep ] && { payload='{"ms":50}'; n=400; }
  : > "$DATA/jobs-$kind.dat"
  for c in 1 2 4 8 16 32; do
    start_tandem scale-jobs TANDEM_JOBS_CONCURRENCY=$c TANDEM_JOBS_PREFETCH=16
    curl -fsS -XPOST -H 'Content-Type: application/json' -d '{}' "$ADMIN_URL/admin/queues/default/pause" >/dev/null
    body=$(python3 -c "import json; print(json.dumps({'jobs':[{'kind':'$kind','payload':json.loads('$payload')}]*$n}))")
    curl -fsS -XPOST -H 'Content-Type: application/json' -d "$body" "$HTTP_URL/v1/jobs/batch" >/dev/null
    t0=$(python3 -c 'import time; print(time.time())')
    curl -fsS -XPOST -H 'Content-Type: application/json' -d '{}' "$ADMIN_URL/admin/queues/default/resume" >/dev/null
    while [ "$(succeeded)" -lt "$n" ]; do sleep 0.02; done
    echo "$c $(python3 -c "import time; print(round($n/(time.time()-$t0),1))")" >> "$DATA/jobs-$kind.dat"
    stop_tandem
  done
done

gnuplot <<GP
set terminal pngcairo size 900,420 font ",10"
set grid; set key top left; set logscale x 2; set xlabel "server.threads"
set output "$IMG/http-throughput.png"
set title "HTTP throughput against threads (64 connections, 2 cores)"; set ylabel "requests/s"
plot "$DATA/http-io.dat" u 1:2 w lp t "/demo/io?ms=50 (I/O-bound)", "$DATA/http-cpu.dat" u 1:2 w lp t "/demo/cpu?n=20000 (CPU-bound)"
set output "$IMG/http-p99.png"
set title "HTTP p99 latency against threads (64 connections, 2 cores)"; set ylabel "p99 ms"; set logscale y
plot "$DATA/http-io.dat" u 1:3 w lp t "/demo/io?ms=50", "$DATA/http-cpu.dat" u 1:3 w lp t "/demo/cpu?n=20000"
unset logscale y
set output "$IMG/jobs-throughput.png"
set title "Jobs/s against jobs.concurrency (2 cores)"; set xlabel "jobs.concurrency"; set ylabel "jobs/s"
plot "$DATA/jobs-cpu.dat" u 1:2 w lp t "cpu (n=20000)", "$DATA/jobs-sleep.dat" u 1:2 w lp t "sleep (50 ms)"
GP

echo "| threads | io req/s | io p99 ms | cpu req/s | cpu p99 ms |"
echo "|---|---|---|---|---|"
paste "$DATA/http-io.dat" "$DATA/http-cpu.dat" | awk '{printf "| %s | %.0f | %.1f | %.0f | %.1f |\n", $1, $2, $3, $5, $6}'
echo
echo "| concurrency | cpu jobs/s | sleep jobs/s |"
echo "|---|---|---|"
paste "$DATA/jobs-cpu.dat" "$DATA/jobs-sleep.dat" | awk '{printf "| %s | %.1f | %.1f |\n", $1, $2, $4}'
