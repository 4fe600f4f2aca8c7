#!/usr/bin/env bash
# Autoscale benchmark (issue 5). Prints figures; asserts nothing.
#   I/O: /demo/io?ms=50 with 64 connections, threads starting at 4 and server.autoscale 4..128:
#        req/s in each 10 s window of the first 30 s, against the best fixed setting (threads=64).
#   CPU: /demo/cpu?n=20000: p99 with autoscale (after a 20 s settle) against fixed threads=2 and 5.
source "$(dirname "$0")/lib.sh"
build_tandem
rps() { wrk -t2 -c64 -d"$2" --latency "$1" | awk '/Requests\/sec/ {print $2}'; }
p99() {
  wrk -t2 -c64 -d"$2" --latency "$1" | awk '/^ +99%/ {v=$2; if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}'
}
if [ "${ONLY:-}" != cpu ]; then
start_tandem best TANDEM_SERVER_THREADS=64
best=$(rps "$HTTP_URL/demo/io?ms=50" 10s)
stop_tandem
start_tandem auto TANDEM_SERVER_THREADS=4 TANDEM_SERVER_AUTOSCALE_MIN=4 TANDEM_SERVER_AUTOSCALE_MAX=128
w1=$(rps "$HTTP_URL/demo/io?ms=50" 10s); w2=$(rps "$HTTP_URL/demo/io?ms=50" 10s); w3=$(rps "$HTTP_URL/demo/io?ms=50" 10s)
size=$(curl -fsS "$ADMIN_URL/admin/pools" | python3 -c 'import json,sys; print(json.load(sys.stdin)["http"]["size"])')
stop_tandem
echo "autoscale I/O: best fixed (threads=64) ${best} req/s; autoscale from 4 threads: 0-10s ${w1}, 10-20s ${w2}, 20-30s ${w3} req/s = $(ratio "$w3" "$best") of best in the third window (target >= 0.80 within 30 s); threads then ${size}"
fi

# CPU-bound p99 is noisy on a shared 2-core machine: ROUNDS rounds (default 3), medians reported.
f2=(); f5=(); au=(); sizes=()
for round in $(seq 1 "${ROUNDS:-3}"); do
for t in 2 5; do
  start_tandem cpu$t TANDEM_SERVER_THREADS=$t
  v=$(p99 "$HTTP_URL/demo/cpu?n=20000" 10s)
  if [ "$t" = 2 ]; then f2+=("$v"); else f5+=("$v"); fi
  stop_tandem
done
start_tandem cpuauto TANDEM_SERVER_THREADS=16 TANDEM_SERVER_AUTOSCALE_MIN=1 TANDEM_SERVER_AUTOSCALE_MAX=128
wrk -t2 -c64 -d20s "$HTTP_URL/demo/cpu?n=20000" >/dev/null
au+=("$(p99 "$HTTP_URL/demo/cpu?n=20000" 10s)")
sizes+=("$(curl -fsS "$ADMIN_URL/admin/pools" | python3 -c 'import json,sys; print(json.load(sys.stdin)["http"]["size"])')")
stop_tandem
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m2=$(med "${f2[@]}"); m5=$(med "${f5[@]}"); ma=$(med "${au[@]}")
best=$(python3 -c "print(min($m2, $m5))")
echo "autoscale CPU p99 (ms) per round: fixed threads=2 (${f2[*]}), threads=5 (${f5[*]}), autoscale from 16 (${au[*]}) ending at threads (${sizes[*]})"
echo "autoscale CPU: median p99 fixed 2 ${m2} ms, fixed 5 ${m5} ms, autoscale ${ma} ms = $(ratio "$ma" "$best") of the best fixed median (target <= 1.20)"
