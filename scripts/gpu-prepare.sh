#!/usr/bin/env bash
# GPU validation kit, companion half (issue 24): on a machine that reaches PyPI, download the exact wheels
# that scripts/gpu-check.sh installs on the bare GPU machine, and pack them into parts that fit the device
# tool's 64 MiB per call.
#
# The GPU machine (the device tool's nvidia-h100-x1 / nvidia-h200): x86_64, Python 3.12, a CUDA 13 image
# (torch 2.11+cu130 with its nvidia-* CUDA 13 libraries, cuDNN 9 for CUDA 13, cuda-bindings), no network.
# So the wheels are cp312 manylinux x86_64, built for CUDA 13:
#   onnxruntime-gpu 1.31.1   CUDA EP + TensorRT EP (links libcudart.so.13, libcublas.so.13, libcudnn.so.9;
#                            its TensorRT EP links libnvinfer.so.10, i.e. TensorRT 10.x for CUDA 13)
#   soundfile, cffi, pycparser               not in the image (export's calibration audio, the tests)
#   cuda-bindings, cuda-pathfinder           installed there only when the image lacks cuda.bindings
#   scikit-build-core, pybind11              build the project's wheel there (native extension, cp312)
#   tensorrt-cu13-libs / -bindings 10.16.1.11
#       PyPI serves tensorrt-cu13-libs (and -cu12-libs, every 10.x and 11.x) only as a 15 kB sdist whose
#       build backend (wheel_stub) downloads the real wheel from NVIDIA's own index at install time, which
#       this workplace cannot reach: `pip download` fails ("No matching distribution" for binaries,
#       URLError from wheel_stub otherwise). The bindings are real wheels but useless without libnvinfer.
#       Put real TensorRT wheels (from a machine that reaches NVIDIA's index) in a folder and pass
#       --extra-wheels DIR; without them the kit's TensorRT items report "skipped: TensorRT is not installed".
#
# Usage: scripts/gpu-prepare.sh [--part-mib 54] [--extra-wheels DIR]
# Writes (ignored by git): .gpu-wheels/wheels/*.whl, .gpu-wheels/carry/{MANIFEST.json,part-NN}, and prints
# the device calls to make, one part each: command "bash scripts/gpu-check.sh",
# carry [".gpu-wheels/carry/MANIFEST.json", ".gpu-wheels/carry/part-NN"].
set -euo pipefail
cd "$(dirname "$0")/.."

PART_MIB=54
EXTRA=""
while (($#)); do
  case "$1" in
    --part-mib) PART_MIB=$2; shift 2 ;;
    --extra-wheels) EXTRA=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) echo "gpu-prepare: unknown argument $1" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
DIR=.gpu-wheels
WHEELS=$DIR/wheels
mkdir -p "$WHEELS"

# The GPU machine's interpreter and platform (docs: Python 3.12.3, x86_64, glibc >= 2.28).
PY_VERSION=3.12
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
PINS=(
  onnxruntime-gpu==1.31.1
  soundfile==0.13.1 cffi==2.1.1 pycparser==3.12
  cuda-bindings==13.5.0 cuda-pathfinder==1.9.1
  scikit-build-core==1.1.2 pybind11==3.1.0
)
TENSORRT_PINS=(tensorrt-cu13-libs==10.16.1.11 tensorrt-cu13-bindings==10.16.1.11)

download() {
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip download -q --no-deps --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp "${PLATFORMS[@]}" -d "$WHEELS" "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}

echo "gpu-prepare: downloading ${PINS[*]} (cp${PY_VERSION/./}, manylinux x86_64) into $WHEELS"
download "${PINS[@]}"

tensorrt_note="not on PyPI as a wheel"
if [[ -n $EXTRA ]]; then
  cp -v "$EXTRA"/*.whl "$WHEELS"/
fi
if compgen -G "$WHEELS/tensorrt_cu13_libs-*.whl" >/dev/null; then
  tensorrt_note="from --extra-wheels"
  compgen -G "$WHEELS/tensorrt_cu13_bindings-*.whl" >/dev/null || download "${TENSORRT_PINS[1]}"
else
  echo "gpu-prepare: looking for ${TENSORRT_PINS[0]} as a wheel on PyPI"
  if download "${TENSORRT_PINS[0]}" >/dev/null 2>&1; then
    tensorrt_note="wheel found on PyPI"
    download "${TENSORRT_PINS[1]}"
  else
    echo "gpu-prepare: ${TENSORRT_PINS[0]}: no wheel on PyPI (only NVIDIA's wheel_stub sdist, which downloads"
    echo "             from NVIDIA's index at install time); the kit's TensorRT items will be skipped."
    echo "             Pass --extra-wheels DIR with tensorrt_cu13_libs + tensorrt_cu13_bindings wheels to include them."
    rm -f "$WHEELS"/tensorrt_cu13_bindings-*.whl
  fi
fi

# Keep exactly one version of each distribution (two stop the whole install there).
"$PY" - "$WHEELS" <<'EOF'
import collections, sys
from pathlib import Path
seen = collections.defaultdict(list)
for p in Path(sys.argv[1]).glob("*.whl"):
    seen[p.name.split("-")[0].lower().replace("_", "-")].append(p.name)
dups = {k: v for k, v in seen.items() if len(v) > 1}
if dups:
    sys.exit(f"gpu-prepare: several versions of {dups} in {sys.argv[1]}: remove the stale ones")
EOF

notes=$(mktemp)
trap 'rm -f "$notes"' EXIT
cat >"$notes" <<EOF
{"target": {"python": "$PY_VERSION", "platform": "manylinux_2_28_x86_64", "cuda": "13"},
 "tensorrt": {"pins": ["${TENSORRT_PINS[0]}", "${TENSORRT_PINS[1]}"], "status": "$tensorrt_note"}}
EOF
"$PY" scripts/gpu_carry.py pack --wheels "$WHEELS" --carry "$DIR/carry" --part-mib "$PART_MIB" --notes "$notes"

# What else travels with each call: the working tree (tracked + untracked files git does not ignore).
tree_bytes=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
largest=$(find "$DIR/carry" -name 'part-*' -printf '%s\n' | sort -n | tail -1)
total=$((tree_bytes + largest + 16384))
echo "gpu-prepare: working tree $((tree_bytes >> 20)) MiB + largest part $((largest >> 20)) MiB = $((total >> 20)) MiB per call (limit 64 MiB)"
if ((total > 64 << 20)); then
  echo "gpu-prepare: too large for one call: rerun with a smaller --part-mib" >&2
  exit 1
fi
echo "gpu-prepare: device calls (the same command each time; the last one runs the checks):"
"$PY" scripts/gpu_carry.py plan --carry "$DIR/carry"
