#!/usr/bin/env bash
# GPU validation kit (issue 24): one command that proves spoofsdk's CUDA and TensorRT paths on a bare GPU
# machine and writes everything it measures to OUT/gpu-check.json, with its log in OUT/gpu-check.log
# (and OUT/gpu-check.md: the parity, throughput and tests/gpu tables for docs/benchmarks.md).
#
#   On the GPU machine (device tool `run`, repo root):  bash scripts/gpu-check.sh
#       carrying .gpu-wheels/carry/MANIFEST.json and one part per call (scripts/gpu-prepare.sh prints the
#       calls). A call that still misses parts stages the one it carried and ends at once (exit 3); the
#       call that brings the last part installs and runs the checks, within GPU_CHECK_BUDGET_S (430 s; hard stop 35 s later).
#   Rehearsal here (no GPU):  scripts/gpu-check.sh --rehearse [--quick | --fake-gpu]
#       verifies the carried parts and the wheels' tags for the device's Python, then runs every item up
#       to the device boundary with .venv's Python; items that need CUDA report "skipped: no GPU ...".
#       --quick: a 2-layer test WavLM instead of WavLM-base-6 and short timings (CI: tests/gpu/test_gpu_kit.py).
#       --fake-gpu: also runs the TensorRT items (engine build, sidecar, parity, throughput) against the
#       fake tensorrt + CUDA of scripts/gpu_fakes.py (plumbing only; marked fake_gpu in the JSON).
#
# Items (scripts/gpu_check.py): models (bundled default detector as FP32 / FP16 / int8 Q/DQ; a WavLM-base
# 6-layer detector from `spoof-train init`'s preset, exported by spoof_export), ORT CPU references and a
# CPU throughput baseline, TensorRT engines FP32 / FP16 / int8 (batch 1..64, up to 4 s), parity of every
# engine and of the ORT CUDA and TensorRT EPs against ORT CPU at the export report's tolerances,
# EngineIncompatibleError on a mismatched sidecar, the tests/gpu lane, throughput at batch 1/8/32/64 of
# 4 s windows (raw batches, BatchScheduler with that many sessions, that many independent sessions).
#
# Resumable: results live in GPU_CHECK_STATE (default /tmp/spoofsdk-gpu-check there, which survives between
# calls while the machine stays warm; runs/gpu-check/state* in a rehearsal). A second run keeps finished
# items and does the deferred ones. Options: --retry-failed, --no-tests, --reset (forget the results).
# Exit: 0 all run items ok, 1 some failed, 3 carry parts still missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T0=$(date +%s)

REHEARSE=0
QUICK=0
RESET=0
FAKE=0
PYARGS=()
while (($#)); do
  case "$1" in
    --rehearse) REHEARSE=1 ;;
    --quick) QUICK=1; PYARGS+=(--quick) ;;
    --fake-gpu) FAKE=1; QUICK=1; PYARGS+=(--fake-gpu) ;;
    --retry-failed | --no-tests) PYARGS+=("$1") ;;
    --reset) RESET=1 ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ((FAKE && !REHEARSE)); then
  echo "gpu-check: --fake-gpu is for rehearsals (--rehearse) only" >&2
  exit 2
fi
BUDGET=${GPU_CHECK_BUDGET_S:-430}
OUT=${OUT:-$ROOT/runs/gpu-check/out}
CARRY=${GPU_CHECK_CARRY:-$ROOT/.gpu-wheels/carry}
if ((REHEARSE)); then
  suffix=""
  if ((QUICK)); then suffix=-quick; fi
  if ((FAKE)); then suffix=-fake; fi
  STATE=${GPU_CHECK_STATE:-$ROOT/runs/gpu-check/state$suffix}
  PY=${PYTHON:-$ROOT/.venv/bin/python}
  [[ -x $PY ]] || PY=python3
  PYARGS+=(--rehearse)
else
  STATE=${GPU_CHECK_STATE:-/tmp/spoofsdk-gpu-check}
  PY=${PYTHON:-python3}
fi
mkdir -p "$OUT" "$STATE"
if ((RESET)); then rm -f "$STATE/results.json"; fi
LOG=$OUT/gpu-check.log

elapsed() { echo $(($(date +%s) - T0)); }
say() { echo "gpu-check [$(elapsed) s]: $*"; }

# Wheel tags the device's pip accepts (Python 3.12, x86_64, glibc 2.28+).
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

# Library folders of the nvidia-* / tensorrt wheels on sys.path (CUDA 13 wheels use nvidia/cu13/lib).
nvidia_lib_path() {
  "$PY" - <<'EOF'
import sys
from pathlib import Path
dirs = []
for entry in sys.path:
    base = Path(entry)
    for pattern in ("nvidia/*/lib", "nvidia/cu13/lib", "nvidia/*/lib64", "tensorrt_libs"):
        for d in sorted(base.glob(pattern)) if base.is_dir() else []:
            if d.is_dir() and any(d.glob("*.so*")) and str(d) not in dirs:
                dirs.append(str(d))
print(":".join(dirs))
EOF
}

source_hash() {
  find sdk export training/spoof_train native CMakeLists.txt pyproject.toml -type f \
    \( -name '*.py' -o -name '*.cpp' -o -name '*.h' -o -name '*.hpp' -o -name '*.txt' -o -name '*.toml' \
       -o -name '*.onnx' -o -name '*.map' -o -name '*.pyi' -o -name '*.cmake' \) -print0 2>/dev/null \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

install_device() {
  # 1. Collect the carried part; stop here (exit 3) while parts are missing.
  local rc=0
  "$PY" scripts/gpu_carry.py stage --carry "$CARRY" --state "$STATE" || rc=$?
  if ((rc == 3)); then
    say "parts still missing: call again carrying the next part (see scripts/gpu-prepare.sh's plan)"
    "$PY" - "$OUT/gpu-check.json" "$STATE" <<'EOF'
import json, sys
from pathlib import Path
state = Path(sys.argv[2])
m = json.loads((state / "parts" / "MANIFEST.json").read_text())
have = sorted(p.name for p in (state / "parts").glob("part-??"))
doc = {"status": "staging", "manifest_id": m["id"], "have": have,
       "missing": [p["name"] for p in m["parts"] if p["name"] not in have]}
Path(sys.argv[1]).write_text(json.dumps(doc, indent=2) + "\n")
EOF
    exit 3
  elif ((rc != 0)); then
    exit "$rc"
  fi
  # 2. Unpack and install the wheels into STATE/site (once per wheel set).
  "$PY" scripts/gpu_carry.py unpack --state "$STATE" --dest "$STATE/wheels"
  local W=$STATE/wheels/wheels id
  id=$(cat "$STATE"/wheels/.unpacked-*)
  if [[ ! -f $STATE/site/.wheels-$id ]]; then
    rm -rf "$STATE/site" "$STATE/buildtools"
    local pipi=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade)
    local main=()
    for w in "$W"/*.whl; do
      case "$(basename "$w")" in
        cuda_bindings-* | cuda_pathfinder-* | scikit_build_core-* | pybind11-* | tensorrt_*) ;;
        *) main+=("$w") ;;
      esac
    done
    say "installing ${#main[@]} wheels into $STATE/site"
    "${pipi[@]}" --target "$STATE/site" "${main[@]}"
    if compgen -G "$W/tensorrt_cu13_libs-*.whl" >/dev/null; then
      say "installing TensorRT (tensorrt_cu13_libs + bindings)"
      "${pipi[@]}" --target "$STATE/site" "$W"/tensorrt_cu13_*.whl
    else
      say "no TensorRT wheels were carried (see scripts/gpu-prepare.sh): TensorRT items will be skipped"
    fi
    if ! "$PY" -c "from cuda.bindings import runtime" 2>/dev/null; then
      say "the image has no cuda.bindings: installing the carried cuda-bindings"
      "${pipi[@]}" --target "$STATE/site" "$W"/cuda_bindings-*.whl "$W"/cuda_pathfinder-*.whl
    fi
    "${pipi[@]}" --target "$STATE/buildtools" "$W"/scikit_build_core-*.whl "$W"/pybind11-*.whl
    touch "$STATE/site/.wheels-$id"
  fi
  # 3. Build and install the project itself (native extension for this Python), again when its source changed.
  #    If it cannot be built (no Python headers, no compiler...), run from the source tree without the
  #    native extension: the items that stream (scheduler, sessions, tests) then fail, the rest still run.
  local h from_source=0
  h=$(source_hash)
  if [[ -f $STATE/site/.project-$h ]]; then
    GPU_CHECK_PROJECT_BUILD="built earlier on this machine (source $h)"
  else
    say "building the spoofsdk wheel on this machine (source $h)"
    rm -rf "$STATE/project"
    if PYTHONPATH=$STATE/buildtools CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      "$PY" -m pip wheel -q --no-build-isolation --no-deps --no-cache-dir -w "$STATE/project" . &&
      "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$STATE/site" \
        "$STATE"/project/spoofsdk-*.whl; then
      rm -f "$STATE"/site/.project-*
      touch "$STATE/site/.project-$h"
      GPU_CHECK_PROJECT_BUILD="built (source $h)"
    else
      say "the spoofsdk wheel did not build here (above): running from the source tree without spoofsdk._native"
      GPU_CHECK_PROJECT_BUILD="failed: running from the source tree without spoofsdk._native (see gpu-check.log)"
      from_source=1
    fi
  fi
  export GPU_CHECK_PROJECT_BUILD
  export PYTHONPATH=$STATE/site${PYTHONPATH:+:$PYTHONPATH}
  if ((from_source)); then
    PYTHONPATH=$PYTHONPATH:$ROOT/sdk:$ROOT/export:$ROOT/training
  fi
  local libs
  libs=$(nvidia_lib_path)
  export LD_LIBRARY_PATH=${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  say "PYTHONPATH=$PYTHONPATH"
  say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
}

rehearse_install() {
  if [[ ! -f $CARRY/MANIFEST.json ]]; then
    say "rehearsal: no carry parts (scripts/gpu-prepare.sh not run here): install step not rehearsed"
    return 0
  fi
  say "rehearsal: verifying the carry parts and the wheels' tags for the device (cp312, manylinux x86_64)"
  "$PY" scripts/gpu_carry.py verify --carry "$CARRY"
  local wheels=("$ROOT"/.gpu-wheels/wheels/*.whl)
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install --dry-run -q --no-index --no-deps \
    --target "$STATE/dry-run-site" --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    --only-binary=:all: "${wheels[@]}" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  say "rehearsal: the device's pip (3.12, manylinux_2_28 x86_64) accepts all ${#wheels[@]} wheels"
}

# If the run ends before the items wrote their JSON (a failed install or build), say so in the JSON.
# shellcheck disable=SC2329  # invoked by the EXIT trap
json_if_missing() {
  local rc=$?
  if [[ ! -f $OUT/gpu-check.json ]]; then
    printf '{"status": "failed_before_items", "exit": %d, "log": "gpu-check.log"}\n' "$rc" >"$OUT/gpu-check.json"
  fi
}

main() {
  rm -f "$OUT/gpu-check.json"
  trap json_if_missing EXIT
  local what="device run"
  if ((REHEARSE)); then what="rehearsal"; fi
  say "$what on $(hostname), state $STATE, out $OUT, budget ${BUDGET} s"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  if ((REHEARSE)); then
    rehearse_install
  else
    install_device
  fi
  local left=$((BUDGET - $(elapsed)))
  ((left > 10)) || left=10
  say "running the items with ${left} s of budget"
  local rc=0
  # Items stop starting when the budget is spent; the hard stop leaves time to return OUT.
  PYTHONUNBUFFERED=1 timeout --kill-after=10 $((left + 25)) \
    "$PY" scripts/gpu_check.py --state "$STATE" --out "$OUT" --budget-s "$left" "${PYARGS[@]}" || rc=$?
  if ((rc == 124 || rc == 137)); then
    say "the item runner hit its hard time limit; finished items are saved in $STATE/results.json"
  fi
  cp -f "$STATE/results.json" "$OUT/gpu-check.json" 2>/dev/null || true
  say "done (exit $rc): $OUT/gpu-check.json, $OUT/gpu-check.log"
  return "$rc"
}

set -o pipefail
main 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
