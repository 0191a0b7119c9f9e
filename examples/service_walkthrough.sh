#!/usr/bin/env bash
# The deletion-request service end to end, on CIFAR-10 (README, "The deletion-request service"):
# train and register a model, import who owns which images, take requests over HTTP, serve a
# batch whose verdict fails -> exact retraining, serve one that passes, verify the audit chain,
# then edit a row behind the ledger's back and watch `ledger verify` name it.
#   bash examples/service_walkthrough.sh [DATA]      (minutes on a 2-core CPU)
set -euo pipefail
DATA=${1:-../shared/data/cifar10}
WORK=${WORK:-runs/walkthrough}
PORT=${PORT:-8765}
rm -rf "$WORK" && mkdir -p "$WORK"
export UNLEARNKIT_LEDGER="$WORK/ledger.db" UNLEARNKIT_QUIET=1
step() { printf '\n$ %s\n' "$*"; "$@"; }

step unlearnkit train --role original --preset examples/presets/service-demo.toml --data "$DATA" --cache "$WORK/store" \
    --copy-to "$WORK/deployed.safetensors" --write-train-ids "$WORK/train-ids.csv"
step python scripts/make_subject_requests.py --data "$DATA" --out "$WORK/subjects" --subjects 2500 --images 20 > /dev/null
step unlearnkit ledger init
step unlearnkit ledger register "$WORK/deployed.safetensors" --data "$DATA" --train-ids "$WORK/train-ids.csv"
step unlearnkit ledger subjects "$WORK/subjects/subjects.csv"

# The HTTP API, with a bearer token (printed once, stored hashed)
TOKEN=$(unlearnkit ledger token create walkthrough --scope admin)
unlearnkit serve-api --port "$PORT" & API=$!
trap 'kill $API 2>/dev/null' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.2; done
# subjects that own images of the deployed model's training pool
mapfile -t OWNERS < <(python - "$WORK" <<'PY'
import csv, sys
pool = {int(r["sample_id"]) for r in csv.DictReader(open(f"{sys.argv[1]}/train-ids.csv"))}
seen = []
for r in csv.DictReader(open(f"{sys.argv[1]}/subjects/subjects.csv")):
    if int(r["sample_id"]) in pool and r["subject_id"] not in seen:
        seen.append(r["subject_id"])
print("\n".join(seen[:60]))
PY
)
post() { printf '\n$ curl -X POST /requests %s\n' "$1"; curl -s -X POST "http://127.0.0.1:$PORT/requests" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$1"; echo; }
post "{\"request_id\": \"req-1\", \"subjects\": [\"${OWNERS[0]}\", \"${OWNERS[1]}\"]}"
post "{\"request_id\": \"req-2\", \"subjects\": [\"${OWNERS[2]}\"]}"
post "{\"request_id\": \"req-2\", \"subjects\": [\"${OWNERS[2]}\"]}"
post "{\"request_id\": \"req-3\", \"subjects\": [\"nobody\"]}"
printf '\n$ curl /requests/req-1 without a token\n'; curl -s "http://127.0.0.1:$PORT/requests/req-1"; echo
step unlearnkit ledger status

# Batch 1: a deliberately weak unlearning run; the memorized images are still recognised
step unlearnkit requests serve --set finetune.epochs=0.05 --set finetune.lr=0.001
step unlearnkit ledger retrain
# Batch 2: twenty more requests, served in one run by an erase-then-repair method (msg, 5
# epochs: a quarter of the original's training; finetune alone leaves memorized images
# recognisable, and its verdict fails here too)
for i in $(seq 10 29); do
    j=$(( 2 * i - 17 ))
    curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/requests" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"request_id\": \"req-$i\", \"subjects\": [\"${OWNERS[$j]}\", \"${OWNERS[$((j + 1))]}\"]}"
done
printf '\n(20 more requests posted: req-10 … req-29, two subjects each)\n'
step unlearnkit requests serve --method msg --set msg.epochs=5
step unlearnkit ledger status
printf '\n$ curl /ledger/verify\n'; curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/ledger/verify"; echo
step unlearnkit ledger dashboard "$WORK/dashboard.html"
step unlearnkit ledger export "$WORK/audit"
step unlearnkit ledger verify

# Someone edits a row behind the ledger's back
printf '\n$ sqlite3 %s "UPDATE requests SET status = '"'"'pending'"'"' WHERE id = '"'"'req-2'"'"'"\n' "$UNLEARNKIT_LEDGER"
python -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE requests SET status = 'pending' WHERE id = 'req-2'\"); c.commit()" "$UNLEARNKIT_LEDGER"
printf '\n$ unlearnkit ledger verify\n'
if unlearnkit ledger verify; then echo "verify missed the edit"; exit 1; fi
