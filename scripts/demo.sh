#!/usr/bin/env bash
# The README's main job: on a fresh Debian/Ubuntu machine, set everything up, make example audio (real
# recordings with a redistributable licence + spoofed speech generated offline with espeak-ng) and score it
# with the default detector bundled in the package (spoof-score with no --model).
# Usage: scripts/demo.sh            (SKIP_SETUP=1 scripts/demo.sh skips scripts/setup.sh when already set up)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SKIP_SETUP:-0}" != 1 ]]; then
  scripts/setup.sh --runtime
fi
PY=.venv/bin/python
OUT=${DEMO_OUT:-out/demo}
mkdir -p "$OUT"
echo "== making demo audio in $OUT/audio"
"$PY" scripts/make-demo-audio.py "$OUT/audio"
echo "== scoring with the bundled default detector: spoof-score $OUT/audio (no --model)"
echo "   real-* files are human recordings; spoof-* files were made on this machine: espeak-ng TTS, and an"
echo "   LPCNet neural-vocoder copy of a real prompt, which the bundled detector misses (docs/model-card.md);"
echo "   nospeech-* files (hold music, a muted line) hold no speech: their label is 'undetermined'."
echo "   flagged = windows at or above the decision threshold / all windows"
rc=0
.venv/bin/spoof-score "$OUT/audio" --no-progress || rc=$?
# 1 = some file could not be scored (reported in the table); anything else is a real failure.
if [[ $rc -ne 0 && $rc -ne 1 ]]; then
  echo "spoof-score failed with exit code $rc" >&2
fi
exit "$rc"
