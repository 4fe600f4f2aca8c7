#!/usr/bin/env bash
# Every benchmark, in order: the scripts that print figures (none asserts anything), then the Go
# benchmarks. `make bench` runs this.
#   bash bench/run.sh              all of them (about 20 minutes on 2 cores; needs wrk, gnuplot)
#   bash bench/run.sh http jobs    only these, in this order (names of bench/NAME.sh, or go)
#   DRY_RUN=1 bash bench/run.sh    print the commands instead of running them
# scaling also rewrites docs/img/*.png and prints docs/scaling.md's table.
# postgres needs Postgres (/usr/lib/postgresql/*/bin) and rewrites docs/img/pg-*.png (gnuplot).
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=(http jobs autoscale scaling postgres yield go)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${ALL[@]}")
for s in "${steps[@]}"; do
  case "$s" in
    go) cmd=(go test -run '^$' -bench . ./server/ ./store/ ./jobs/ ./metrics/) ;;
    *)
      [ -f "bench/$s.sh" ] && [ "$s" != lib ] && [ "$s" != run ] || { echo "bench/run.sh: no benchmark $s; the benchmarks are ${ALL[*]}" >&2; exit 2; }
      cmd=(bash "bench/$s.sh") ;;
  esac
  echo "== ${cmd[*]}"
  [ -n "${DRY_RUN:-}" ] || "${cmd[@]}"
done
