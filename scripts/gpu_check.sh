#!/usr/bin/env bash
# The GPU check of the scale-out issue, as one script for a lent GPU machine (the `device`
# tool), so that a session spends its few minutes of device time measuring, not setting up.
#
# Here, before the call, carry the data as the developers' brief says:
#   mkdir -p .carry/cifar10 && cp ../shared/data/cifar10/{cifar10-jpeg.tar.gz,labels-official-order.npy,jpeg_to_bin.py} .carry/cifar10/
# then run: bash scripts/gpu_check.sh [EPOCHS]   (with carry [".carry"], timeout ~540 s)
# It writes into $OUT (or out/gpu): the CUDA-relevant tests' log, train_throughput on CUDA
# (ResNet-18 width 64 at batch 512, and vit-tiny), and the `paper` preset's original model
# trained for EPOCHS epochs (default 10) with its img/s and final train/test accuracy (the
# training log has loss and accuracy per epoch; test accuracy is measured at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/gpu}"; mkdir -p "$out"
epochs="${1:-10}"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/device.txt"
pip install -q -e . 2>&1 | tail -1 || true   # the machine's own CUDA torch stays; no constraints file here
python3 .carry/cifar10/jpeg_to_bin.py .carry/cifar10/cifar-10-batches-bin > "$out/data.txt" 2>&1
export UNLEARNKIT_DATA="$PWD/.carry/cifar10/cifar-10-batches-bin" UNLEARNKIT_CACHE="$PWD/.carry/cache"
python3 -m pytest -q tests/test_train.py tests/test_resume.py tests/test_models.py -x > "$out/tests.txt" 2>&1 || true
python3 bench/train_throughput.py --device cuda --images 20480 --batch 512 --engine-batch 1024 --data "$UNLEARNKIT_DATA" > "$out/throughput-resnet18.txt" 2>&1 || true
python3 bench/train_throughput.py --device cuda --model vit-tiny --images 10240 --batch 512 --engine-batch 1024 --data "$UNLEARNKIT_DATA" > "$out/throughput-vit.txt" 2>&1 || true
cat > .carry/paper-short.toml <<TOML
name = "paper-short"
description = "the paper preset's recipe, cut to ${epochs} epochs for a timed GPU check"
forget = 0.1
[model]
name = "resnet18"
kwargs = { width = 64 }
[recipe]
epochs = ${epochs}
batch_size = 128
lr = 0.1
momentum = 0.9
nesterov = false
weight_decay = 5e-4
schedule = "cosine"
warmup = 0.0
augment = true
TOML
python3 -m unlearnkit train --role original --preset .carry/paper-short.toml > "$out/paper-original.txt" 2>&1 || true
python3 - > "$out/paper-metrics.json" <<'PY' || true
import json, sys, glob
for sidecar in glob.glob(".carry/cache/store/models/*/model.json"):
    meta = json.load(open(sidecar))
    print(json.dumps({"metrics": meta.get("metrics"), "timings": meta.get("timings"), "recipe": meta.get("recipe")}))
PY

tail -n 3 "$out"/*.txt
