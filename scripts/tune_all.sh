#!/usr/bin/env bash
# The equal-budget search (issues 14 and 15): every image method on the default preset, seed 0,
# scored on the validation split only, TRIALS finished trials each (the first at the method's
# defaults). Every method that trains on the retain set is held at one pass over it
# (epochs = 1, the NeurIPS 2023 challenge's <= 0.2x-retrain budget), so that each trial costs
# about the same and the search compares settings, not compute. gradient-ascent's epochs are
# passes over the forget set only, and stay in its search.
#
#   scripts/tune_all.sh                      # every method, in `unlearnkit methods` order
#   scripts/tune_all.sh finetune cfw         # only these
#
# Resumable: the studies live in runs/tune/studies.db, so a stopped loop started again goes on
# where it stopped. Each study is exported to docs/tune/<method>-default-seed0[-epochs1].{json,md}.
set -euo pipefail
trials=${TRIALS:-6}
threads=${THREADS:-$(nproc)}  # as `unlearnkit run` trains, so that a trial's seconds compare with the retrain's
python=${PYTHON:-.venv/bin/python}
methods=("$@")
if [ ${#methods[@]} -eq 0 ]; then
  mapfile -t methods < <("$python" -c "import unlearnkit; print('\n'.join(unlearnkit.list_methods()))")
fi
for method in "${methods[@]}"; do
  [ "$method" != sisa ] || continue  # exact deletion from a SISA ensemble: no hyperparameter to search
  hold=()
  if "$python" -c "import sys; from unlearnkit.tuning import search_space; sys.exit('epochs' not in search_space('$method'))" && [ "$method" != gradient-ascent ]; then
    hold=(--set "$method.epochs=1")
  fi
  "$python" -m unlearnkit tune "$method" --preset default --seed 0 --trials "$trials" --cpus-per-task "$threads" --export docs/tune "${hold[@]}"
done
