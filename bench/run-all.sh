#!/usr/bin/env bash
# Every benchmark behind docs/performance.md, one after another (never in parallel: they share
# the machine's cores, and a concurrent run would lower both figures), then the plots.
#
#   bash bench/run-all.sh            # the full set, about 3.5 hours on 2 cores (the soak alone 130 min)
#   BENCH_BEFORE=1 bash bench/run-all.sh   # also the processor before the hot-path work (+15 min)
#   bash bench/run-all.sh --quick    # small sizes, one run each: checks that everything works
#
# Needs the local services: `bash scripts/services.sh up`. Raw results land in bench/results/,
# plots in docs/img/. A failing benchmark is reported and the others still run; the exit status
# says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
quick=false
[[ "${1:-}" == "--quick" ]] && quick=true
failed=()

step() {
  local name=$1
  shift
  echo "=== $name: $*" >&2
  local start=$SECONDS
  if "$PY" "$@"; then
    echo "=== $name done in $((SECONDS - start))s" >&2
  else
    echo "=== $name FAILED (exit $?) after $((SECONDS - start))s" >&2
    failed+=("$name")
  fi
}

if $quick; then
  step processor bench/processor_throughput.py --ticks 20000 --runs 1
  step sink bench/sink_throughput.py --ticks 20000 --runs 1
  step producer bench/producer_throughput.py --ticks 50000 --runs 1
  step latency bench/latency.py --duration 10 --warmup 5 --drain 15 --runs 1
  step memory bench/memory.py --coins 100 --rounds 5 --producer-polls 2 --runs 1
  step replicas bench/replicas.py --ticks 20000 --runs 1
else
  # Shortest first, the processor's 1M-tick runs (about 30 minutes) last.
  step sink bench/sink_throughput.py --ticks 200000 --runs 3
  step producer bench/producer_throughput.py --ticks 1000000 --runs 3
  step latency bench/latency.py --runs 3
  step memory bench/memory.py --coins 1000 10000 --runs 3
  step replicas bench/replicas.py --runs 3
  step soak bench/soak.py --coins 10000 --minutes 130 --warmup 65 --span 15
  step processor bench/processor_throughput.py --ticks 1000000 --runs 3
  if [[ "${BENCH_BEFORE:-}" == 1 && -d .cache/bench/before/processor ]]; then
    # The processor before the hot-path work (commit 0254f7d), for the before/after figure:
    #   mkdir -p .cache/bench/before && git archive 0254f7d processor | tar -x -C .cache/bench/before
    step processor-before bench/processor_throughput.py --ticks 1000000 --runs 1 --code .cache/bench/before
  fi
fi
"$PY" bench/plots.py
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
