#!/usr/bin/env bash
# Random, memorized and entangled forget sets of the same size on one preset and seed, every
# method named under the relearning and compression audits, then their leaderboard summaries:
#   bash scripts/worstcase.sh [PRESET] [SEED] [METHODS]
# (issue 39: docs/results.md's worst-case table). Runs go to runs/worstcase-*; a second call
# reuses every model in the store.
set -euo pipefail
preset=${1:-default}
seed=${2:-0}
methods=${3:-dummy-labels,kl,erase-repair,amun,finetune,prune-l1,prune-cosine,l1-sparse}
cd "$(dirname "$0")/.."
for scenario in entangled:0.02 memorized:0.02 random:0.02; do
  name=worstcase-${preset}-${scenario%%:*}-s${seed}
  command="unlearnkit run --preset $preset --seed $seed --forget $scenario --methods $methods --audit relearn,quantize"
  echo "== $command"
  .venv/bin/$command --out runs/$name
  .venv/bin/python scripts/leaderboard.py add runs/$name --name image-$name --title "$preset preset, forget $scenario, seed $seed" --command "$command"
done
