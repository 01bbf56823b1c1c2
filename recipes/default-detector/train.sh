#!/usr/bin/env bash
# Default detector v2, the whole recipe (docs/model-card.md): corpus-v2's licensed rows -> the candidates
# (fixed in advance: v2-spectral.yaml, v2-whisper2l.yaml; trained in parallel, one core each) -> per-attack
# EERs on the evaluation sets (eval_sets.py: corpus-v1 dev/test, all rows, + corpus-v2's neural spoofs) ->
# the selection rule (selection.py: lowest mean EER over the dev attacks that are neural and unseen in
# training; the pairwise fusion is a candidate too) -> the winner exported FP32 with its score calibration
# fitted on the licensed dev clips through the SDK -> evaluation of the file through the SDK -> shipped.
#
# Usage: recipes/default-detector/train.sh [--no-train] [--no-ship]
#   CORPUS_V1=../shared/data/corpus-v1, CORPUS_V2=runs/corpus-v2 (recipes/corpus-v2/build.sh builds it),
#   OUT=runs/v2, CANDIDATES="spectral whisper2l" (names of v2-NAME.yaml here),
#   EXTRA_TRAIN=MANIFEST.tsv (opt-in, default none: train rows added to the training manifest after the same
#   licence filter, e.g. recipes/corpus-v2/studio-supplement.sh's; every row must be in split train).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=recipes/default-detector
PY=.venv/bin/python
CORPUS_V1=${CORPUS_V1:-../shared/data/corpus-v1}
CORPUS_V2=${CORPUS_V2:-runs/corpus-v2}
OUT=${OUT:-runs/v2}
CANDIDATES=${CANDIDATES:-spectral whisper2l}
TRAIN=1
SHIP=1
for arg in "$@"; do
  case "$arg" in
    --no-train) TRAIN=0 ;;
    --no-ship) SHIP=0 ;;
    *) echo "unknown argument: $arg (expected --no-train / --no-ship)" >&2; exit 2 ;;
  esac
done
[ -f "$CORPUS_V1/MANIFEST.tsv" ] || { echo "corpus-v1 not found at $CORPUS_V1 (set CORPUS_V1=...)" >&2; exit 2; }
[ -f "$CORPUS_V2/MANIFEST.tsv" ] || { echo "corpus-v2 not found at $CORPUS_V2: bash recipes/corpus-v2/build.sh $CORPUS_V2" >&2; exit 2; }
mkdir -p "$OUT"
LICENSED="$OUT/licensed-train-dev.tsv"
read -r -a NAMES <<< "$CANDIDATES"

echo "== 1/7 licence filter (corpus-v2 train + dev rows whose licence allows a shipped model)"
$PY -m spoof_train.licence "$CORPUS_V2/MANIFEST.tsv" -o "$LICENSED" --splits train dev --report "$OUT/licence-report.json"
if [ -n "${EXTRA_TRAIN:-}" ]; then
  echo "== 1b/7 + the train rows of $EXTRA_TRAIN (same licence filter; train split only)"
  $PY -c 'import sys; from spoof_train.data import read_manifest as r; s = {u.split for u in r(sys.argv[1])}
sys.exit(f"EXTRA_TRAIN {sys.argv[1]} has rows of splits {sorted(s)}; only train is allowed" if s != {"train"} else 0)' \
    "$EXTRA_TRAIN"
  $PY -m spoof_train.licence "$LICENSED" "$EXTRA_TRAIN" -o "$LICENSED" --report "$OUT/licence-report-extra.json"
fi

echo "== 2/7 evaluation sets (corpus-v1 dev/test, every row, + corpus-v2's neural spoofs of the same split)"
$PY "$HERE/eval_sets.py" "$CORPUS_V1" "$CORPUS_V2" -o "$OUT"

if [ "$TRAIN" = 1 ]; then
  echo "== 3/7 train the candidates in parallel, one torch thread each: ${NAMES[*]}"
  pids=()
  for n in "${NAMES[@]}"; do
    mkdir -p "$OUT/$n"
    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/spoof-train train "$HERE/v2-$n.yaml" \
      --set "data.manifest=$LICENSED" --set "output_dir=$OUT/$n" > "$OUT/$n.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { tail -n 20 "$OUT/${NAMES[$i]}.log" >&2; echo "training ${NAMES[$i]} failed" >&2; exit 1; }
  done
fi

echo "== 4/7 score every candidate on eval-dev and eval-test (full clips, 2 s chunks)"
for n in "${NAMES[@]}"; do
  for s in dev test; do
    [ -f "$OUT/$n/eval-$s/scores.tsv" ] && continue
    OMP_NUM_THREADS=1 .venv/bin/spoof-train evaluate "$OUT/$n/checkpoints/best" --manifest "$OUT/eval-$s.tsv" \
      --split "$s" --out "$OUT/$n/eval-$s" --threads 1 --chunk-seconds 2 > "$OUT/$n/eval-$s.log" 2>&1
  done
done

echo "== 5/7 the selection rule on dev (and the same table on test, for the record)"
args=()
for n in "${NAMES[@]}"; do args+=("$n=$OUT/$n/eval-dev"); done
$PY "$HERE/selection.py" "${args[@]}" --json "$OUT/selection-dev.json" | tee "$OUT/selection-dev.md"
args=()
for n in "${NAMES[@]}"; do args+=("$n=$OUT/$n/eval-test"); done
$PY "$HERE/selection.py" "${args[@]}" --select hifigan_demo,melgan_demo,piper --json "$OUT/selection-test.json" \
  | tee "$OUT/selection-test.md"
WINNER=$($PY -c 'import json,sys; r=json.load(open(sys.argv[1])); print(min(r, key=lambda k: r[k]["selection"]))' \
  "$OUT/selection-dev.json")
echo "winner on dev: $WINNER"
CKPT="$OUT/ship/checkpoint"
mkdir -p "$OUT/ship"
rm -rf "$CKPT"
if [[ "$WINNER" == *+* ]]; then
  members=()
  IFS=+ read -r -a parts <<< "$WINNER"
  for p in "${parts[@]}"; do members+=("$OUT/$p/checkpoints/best"); done
  .venv/bin/spoof-train ensemble "${members[@]}" -o "$CKPT"
else
  cp -r "$OUT/$WINNER/checkpoints/best" "$CKPT"
fi

echo "== 6/7 export FP32, calibrated on the licensed dev clips through the SDK (speech gate on, as the SDK scores)"
.venv/bin/spoof-export "$CKPT" -o "$OUT/ship/default" --dev "$LICENSED" --dev-split dev --dev-max-files 600 \
  --calibrate --num-threads 1 --latency-repeats 20

echo "== 7/7 the file through the SDK on corpus-v1 + corpus-v2 evaluation rows"
for s in dev test; do
  $PY scripts/default_detector.py evaluate "$OUT/ship/default.onnx" --manifest "$OUT/eval-$s.tsv" --splits "$s" \
    --seen-from "$CKPT" --out "$OUT/ship/eval-$s.json" --scores-dir "$OUT/ship/scores-$s" --threads 1
done
if [ "$SHIP" = 1 ]; then
  cp "$OUT/ship/default.onnx" sdk/spoofsdk/models/default.onnx
  echo "shipped sdk/spoofsdk/models/default.onnx ($(du -h sdk/spoofsdk/models/default.onnx | cut -f1)) = $WINNER"
fi
