#!/usr/bin/env bash
# The v2 candidates and v1 scored as a call centre hears them (v2-search-notes.md, "Through the telephone
# channel"): telephone_sets.py puts every clip of eval-{dev,test}.tsv through an 8 kHz G.711 round trip,
# then v1 (its shipped file through the SDK) and every candidate checkpoint named below are scored on the
# result (two jobs at a time, one thread each) and selection.py writes the same tables as train.sh.
#
# Usage: recipes/default-detector/telephone_eval.sh NAME=CHECKPOINT_DIR ...
#   EVAL=runs/v2 (where eval-dev.tsv / eval-test.tsv are), OUT=runs/v2-tel, V1=runs/v2/v1-baseline/default-v1.onnx
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=recipes/default-detector
PY=.venv/bin/python
EVAL=${EVAL:-runs/v2}
OUT=${OUT:-runs/v2-tel}
V1=${V1:-runs/v2/v1-baseline/default-v1.onnx}
SEEN=espeak,festival_kal,flite_awb,flite_kal,flite_rms,griffinlim,world
[ "$#" -ge 1 ] || { echo "usage: $0 NAME=CHECKPOINT_DIR ..." >&2; exit 2; }

$PY -P "$HERE/telephone_sets.py" "$EVAL/eval-dev.tsv" "$EVAL/eval-test.tsv" -o "$OUT"
mkdir -p "$OUT/v1"
score_v1() {
  for s in dev test; do
    OMP_NUM_THREADS=1 $PY scripts/default_detector.py evaluate "$V1" --manifest "$OUT/eval-$s.tsv" --splits "$s" \
      --seen-attacks "$SEEN" --scores-dir "$OUT/v1/scores-$s" --threads 1 --out "$OUT/v1/eval-$s.json" \
      > "$OUT/v1-$s.log" 2>&1
  done
}
score() { # NAME CHECKPOINT
  for s in dev test; do
    OMP_NUM_THREADS=1 .venv/bin/spoof-train evaluate "$2" --manifest "$OUT/eval-$s.tsv" --split "$s" \
      --out "$OUT/$1/eval-$s" --threads 1 --chunk-seconds 2 --quiet > "$OUT/$1-eval-$s.log" 2>&1
  done
}
source "$HERE/jobs.sh"  # throttle, wait_all
score_v1 &
for spec in "$@"; do
  throttle
  score "${spec%%=*}" "${spec#*=}" &
done
wait_all
for s in dev test; do
  args=("v1=$OUT/v1/scores-$s")
  for spec in "$@"; do args+=("${spec%%=*}=$OUT/${spec%%=*}/eval-$s"); done
  extra=()
  [ "$s" = test ] && extra=(--select hifigan_demo,melgan_demo,piper)
  $PY -P "$HERE/selection.py" "${args[@]}" "${extra[@]}" --json "$OUT/selection-$s.json" | tee "$OUT/selection-$s.md"
done
