#!/usr/bin/env bash
# The wideband studio supplement of corpus-v2 (issue 20, round 3; docs/model-card.md "Default detector v2"):
# licensed clean studio read speech as bona fide + vocoded copies of it as spoof, so that "clean studio" stops
# meaning one class. Source: Allison Smith's studio-recorded Asterisk prompts, Debian 12 packages
# asterisk-core-sounds-en-g722 and -es-g722 (1.6.1-1; CC BY-SA 3.0 per /usr/share/doc/*/copyright), 16 kHz
# G.722. Allison (speaker asterisk-allison) is a train speaker of corpus-v1 (its 8 kHz wav prompts), so every
# row is train: the speaker-disjoint splits stay as they are.
#
#   1. apt-get download the two packages, dpkg-deb -x them; PyAV (FFmpeg's G.722 codec; sox has none) into a
#      private pip --target folder under OUT (never a project dependency)
#   2. every prompt >= 1.0 s -> 16 kHz, conditioned as corpus-v1 (trim, 12 s cap, level, noise floor; no
#      G.711/GSM channel), G.722 round trip -> PCM WAV (bona fide)
#   3. spoof-train synth: HiFi-GAN V1 and LPCNet copy-synthesis of disjoint seeded subsets (MINUTES_HIFIGAN,
#      MINUTES_LPCNET of audio), --p-channel 0
#   4. the spoofs get the same G.722 round trip (both classes end with the same codec step)
#   5. OUT/MANIFEST.tsv (corpus-v2's columns, absolute paths, split train) and OUT/summary.json
# Then: EXTRA_TRAIN=OUT/MANIFEST.tsv OUT=runs/v2-studio bash recipes/default-detector/train.sh --no-ship
#
# Usage: recipes/corpus-v2/studio-supplement.sh [OUT]      (default runs/studio-supplement)
#   WORKERS=2  PYTHON=.venv/bin/python  MINUTES_HIFIGAN=15  MINUTES_LPCNET=10 (0 skips a generator)
# A rerun continues (downloads, PyAV and finished clips are kept). Audio stays under OUT: never commit it.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/studio-supplement}
WORKERS=${WORKERS:-2}
PY=${PYTHON:-.venv/bin/python}
MINUTES_HIFIGAN=${MINUTES_HIFIGAN:-15}
MINUTES_LPCNET=${MINUTES_LPCNET:-10}
HERE=recipes/corpus-v2
PKGS=(asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722)
mkdir -p "$OUT/deb" "$OUT/licences"
start=$(date +%s)
stage() { echo "== studio supplement: $* ($(( $(date +%s) - start )) s)"; }

stage "1/5 packages ${PKGS[*]} and PyAV"
for p in "${PKGS[@]}"; do
  ls "$OUT/deb/${p}"_*.deb >/dev/null 2>&1 || (cd "$OUT/deb" && apt-get download "$p")
done
rm -rf "$OUT/root"
for f in "$OUT"/deb/*.deb; do dpkg-deb -x "$f" "$OUT/root"; done
for p in "${PKGS[@]}"; do cp "$OUT/root/usr/share/doc/$p/copyright" "$OUT/licences/$p.copyright"; done
ls "$OUT"/deb/*.deb | xargs -n1 basename > "$OUT/licences/packages.txt"
[ -d "$OUT/pylib/av" ] || "$PY" -m pip install --quiet --no-deps --target "$OUT/pylib" av

stage "2/5 decode, condition, G.722 round trip (bona fide)"
"$PY" "$HERE/studio-supplement.py" decode "$OUT/root" -o "$OUT" --pylib "$OUT/pylib" \
  --minutes "hifigan=$MINUTES_HIFIGAN" "lpcnet=$MINUTES_LPCNET"

stage "3/5 vocoded copies (spoof-train synth, no G.711/GSM channel)"
for g in hifigan lpcnet; do
  [ "$(wc -l < "$OUT/subset-$g.tsv")" -gt 1 ] || continue
  "$PY" -m spoof_train.cli synth "$OUT/subset-$g.tsv" --generator "$g" --p-channel 0 -o "$OUT/neural" \
    --workers "$WORKERS" --no-progress
done

stage "4/5 G.722 round trip of the spoofs"
"$PY" "$HERE/studio-supplement.py" roundtrip "$OUT/neural/MANIFEST.tsv" -o "$OUT" --pylib "$OUT/pylib"

stage "5/5 manifest"
"$PY" "$HERE/studio-supplement.py" merge -o "$OUT"
"$PY" -m spoof_train.licence "$OUT/MANIFEST.tsv" -o "$OUT/licensed-check.tsv" --report "$OUT/licence-report.json"
end=$(date +%s)
printf '{"started": "%s", "seconds": %d, "workers": %d}\n' \
  "$(date -u -d "@$start" +%Y-%m-%dT%H:%M:%SZ)" $((end - start)) "$WORKERS" >> "$OUT/build-runs.jsonl"
stage "done: $(( end - start )) s -> $OUT/MANIFEST.tsv"
