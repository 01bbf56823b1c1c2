#!/usr/bin/env bash
# The README's main job: on a fresh Debian/Ubuntu machine, set everything up, make example audio (real
# recordings with a redistributable licence + spoofed speech generated offline with espeak-ng) and score it
# with the default detector bundled in the package (spoof-score with no --model).
# Usage: scripts/demo.sh            (SKIP_SETUP=1 scripts/demo.sh skips scripts/setup.sh when already set up)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SKIP_SETUP:-0}" != 1 ]]; then
  scripts/setup.sh
fi
PY=.venv/bin/python
OUT=${DEMO_OUT:-out/demo}
mkdir -p "$OUT"
echo "== making demo audio in $OUT/audio"
"$PY" scripts/make-demo-audio.py "$OUT/audio"
echo "== scoring with the bundled default detector: spoof-score $OUT/audio (no --model)"
rc=0
.venv/bin/spoof-score "$OUT/audio" --format json --windows --no-progress -o "$OUT/scores.json" || rc=$?
if [[ $rc -ne 0 && $rc -ne 1 ]]; then
  echo "spoof-score failed with exit code $rc" >&2
  exit "$rc"
fi
"$PY" - "$OUT/scores.json" <<'PYEOF'
import json, os, sys

doc = json.load(open(sys.argv[1]))
rows = [("file", "duration", "spoof prob", "verdict", "windows flagged")]
for r in sorted(doc["results"], key=lambda r: os.path.basename(r["path"])):
    name = os.path.basename(r["path"])
    if not r["ok"]:
        rows.append((name, "", "", "ERROR", f"{r['error_type']}: {r['error']}"))
        continue
    flagged = sum(w["spoof_prob"] >= r["threshold"] for w in r["windows"])
    rows.append((name, f"{r['duration_s']:.1f} s", f"{r['spoof_prob']:.3f}",
                 "SPOOF" if r["is_spoof"] else "bona fide", f"{flagged}/{r['n_windows']}"))
w = [max(len(row[i]) for row in rows) for i in range(5)]
for i, row in enumerate(rows):
    print("  ".join(v.ljust(w[j]) if j in (0, 3) else v.rjust(w[j]) for j, v in enumerate(row)))
    if i == 0:
        print("  ".join("-" * x for x in w))
thr = doc["results"][0].get("threshold") if doc["results"] and doc["results"][0]["ok"] else None
print(f"\nmodel: {doc['model']}, backend: {doc['backend']}, threshold: {thr} (spoof probability)")
print("real-* files are human recordings, spoof-* files were synthesised by espeak-ng on this machine.")
PYEOF
exit "$rc"
