#!/usr/bin/env bash
# Build corpus-v2: the licensed rows of corpus-v1 + neural spoofs of its licensed bona fide clips (LPCNet
# re-synthesis in every split, HiFi-GAN V1 copy-synthesis in train/dev, the LPCNet codec in dev/test), Kokoro TTS (train voices jf_alpha, jf_gongitsune,
# jm_kumo; dev jf_nezumi; test jf_tebukuro) and Piper TTS held out of train (dev/test only; its voice's licence
# chain is not fully stated, so it is evaluation-only anyway). docs/training-data.md, "corpus-v2", has the plan.
#
# Usage: recipes/corpus-v2/build.sh [OUT]      (default runs/corpus-v2)
#   CORPUS=../shared/data/corpus-v1  WORKERS=2  PYTHON=.venv/bin/python  LIMIT=N (a trial: N inputs per step)
# Rerunning it continues an interrupted build (finished clips are skipped).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/corpus-v2}
CORPUS=${CORPUS:-../shared/data/corpus-v1}
WORKERS=${WORKERS:-2}
PY=${PYTHON:-.venv/bin/python}
TEXTS=recipes/corpus-v2/texts.tsv
[[ -f "$CORPUS/MANIFEST.tsv" ]] || { echo "corpus-v2: no corpus-v1 at $CORPUS (set CORPUS=...)" >&2; exit 2; }
mkdir -p "$OUT"
start=$(date +%s)
stage() { echo "== corpus-v2: $* ($(( $(date +%s) - start )) s)"; }

stage "licensed corpus-v1 rows"
"$PY" -m spoof_train.licence "$CORPUS/MANIFEST.tsv" -o "$OUT/corpus-v1-licensed.tsv" \
  --report "$OUT/corpus-v1-licence.json"
LIMIT_ARGS=()
[[ -n "${LIMIT:-}" ]] && LIMIT_ARGS=(--limit "$LIMIT")
synth() { "$PY" -m spoof_train.cli synth "$@" -o "$OUT/neural" --workers "$WORKERS" "${LIMIT_ARGS[@]}"; }
stage "LPCNet re-synthesis of the licensed bona fide clips (train, dev, test)"
synth "$OUT/corpus-v1-licensed.tsv" --generator lpcnet
stage "HiFi-GAN V1 copy-synthesis (train, dev; test keeps corpus-v1's hifigan_demo as the family's measure)"
synth "$OUT/corpus-v1-licensed.tsv" --generator hifigan --splits train dev
stage "LPCNet 1.7 kbit/s codec (dev, test: unseen in train)"
synth "$OUT/corpus-v1-licensed.tsv" --generator lpcnet-codec --splits dev test
# TTS output gets the recorded room noise of a licensed bona fide clip of its split (its pauses, at its own
# noise-to-speech ratio): without it, digital silence between words told TTS from bona fide (cue check)
ROOM=(--noise-from "$OUT/corpus-v1-licensed.tsv")
stage "Kokoro TTS, one voice set per split"
synth "$TEXTS" --generator kokoro:voices=jf_alpha+jf_gongitsune+jm_kumo --splits train "${ROOM[@]}"
synth "$TEXTS" --generator kokoro:voices=jf_nezumi --splits dev "${ROOM[@]}"
synth "$TEXTS" --generator kokoro:voices=jf_tebukuro --splits test "${ROOM[@]}"
stage "Piper TTS (dev, test: the held-out neural TTS)"
synth "$TEXTS" --generator piper --splits dev test "${ROOM[@]}"
stage "merge, split and licence checks"
"$PY" recipes/corpus-v2/merge.py "$OUT/corpus-v1-licensed.tsv" "$OUT/neural/MANIFEST.tsv" -o "$OUT"
stage "cue check"
"$PY" -m spoof_train.synth.cues "$OUT/MANIFEST.tsv" -o "$OUT/cue_check.tsv"
end=$(date +%s)
size=$(du -sb "$OUT/neural/audio" | cut -f1)
# one line per run of this script (a rerun that continues a build is a run of its own)
printf '{"started": "%s", "seconds": %d, "neural_audio_bytes": %d, "workers": %d}\n' \
  "$(date -u -d "@$start" +%Y-%m-%dT%H:%M:%SZ)" $((end - start)) "$size" "$WORKERS" >> "$OUT/build-runs.jsonl"
stage "done: $(( end - start )) s, neural audio $(du -sh "$OUT/neural/audio" | cut -f1)"
