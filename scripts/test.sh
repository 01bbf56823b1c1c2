#!/usr/bin/env bash
# Set up everything, then run the whole test suite: lint and types, the native lanes
# (C/C++ tests, ASan+UBSan, TSan, aarch64 under qemu-user, fuzzing), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV_BIN="$(pwd)/.venv/bin"
export PATH="$VENV_BIN:$PATH"

echo "== lint: ruff, ruff format, mypy"
ruff check .
ruff format --check .
mypy

echo "== native lanes"
scripts/native-tests.sh

echo "== pytest"
# Exit code 5 (no tests collected) is a failure here too.
python -m pytest "$@"
