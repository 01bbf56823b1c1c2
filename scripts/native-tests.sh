#!/usr/bin/env bash
# The native lanes of the test command (called by scripts/test.sh; also runnable alone):
#   1. plain Release build + ctest
#   2. clang AddressSanitizer + UndefinedBehaviorSanitizer build + ctest
#   3. clang ThreadSanitizer build running the two-thread stress test
#   4. aarch64 cross build (Debian's aarch64-linux-gnu-g++) + ctest under qemu-aarch64
#   5. libFuzzer (clang, ASan+UBSan) run for SPOOF_FUZZ_SECONDS (default 60) from the seed
#      corpus in native/fuzz/corpus (new inputs go to build/, never into the repo)
# Build trees live under build/native-* (gitignored). Any failure fails the script.
# Usage: scripts/native-tests.sh [lane ...]   (lanes: plain asan tsan aarch64 fuzz; default all)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${SPOOF_JOBS:-2}
FUZZ_SECONDS=${SPOOF_FUZZ_SECONDS:-60}
LANES=("$@")
((${#LANES[@]})) || LANES=(plain asan tsan aarch64 fuzz)
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
CLANG_C=$(command -v clang || command -v clang-14)
CLANG_CXX=$(command -v clang++ || command -v clang++-14)

header() { printf '\n======== native lane: %s ========\n' "$1"; }
configure() {  # configure <build dir> <cmake args...>
  local dir=$1
  shift
  cmake -S "$ROOT" -B "$dir" "${GEN[@]}" -DSPOOF_BUILD_TESTS=ON "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
}
mkdir -p build

lane_plain() {
  header "plain (Release, $(c++ --version | head -1)) + ctest"
  configure build/native-plain -DCMAKE_BUILD_TYPE=Release
  cmake --build build/native-plain -j "$JOBS"
  ctest --test-dir build/native-plain --output-on-failure -j "$JOBS"
}

lane_asan() {
  header "ASan + UBSan (clang, -fno-sanitize-recover=all) + ctest"
  configure build/native-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CLANG_C" \
    -DCMAKE_CXX_COMPILER="$CLANG_CXX" -DSPOOF_SANITIZE=address,undefined
  cmake --build build/native-asan -j "$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/native-asan --output-on-failure -j "$JOBS"
}

lane_tsan() {
  header "TSan (clang) two-thread stress test"
  configure build/native-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CLANG_C" \
    -DCMAKE_CXX_COMPILER="$CLANG_CXX" -DSPOOF_SANITIZE=thread
  cmake --build build/native-tsan -j "$JOBS" --target ring_stress_test
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build/native-tsan --output-on-failure -R ring_stress_test
}

lane_aarch64() {
  header "aarch64 cross build ($(aarch64-linux-gnu-g++ --version | head -1)) + ctest under qemu-aarch64"
  configure build/native-aarch64 -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$ROOT/native/cmake/aarch64-linux-gnu.cmake"
  cmake --build build/native-aarch64 -j "$JOBS"
  readelf -h build/native-aarch64/native/libspoof.so | grep -q "AArch64" ||
    { echo "libspoof.so is not an aarch64 binary"; return 1; }
  ctest --test-dir build/native-aarch64 --output-on-failure -j "$JOBS"
}

lane_fuzz() {
  header "libFuzzer front end (clang, ASan + UBSan), ${FUZZ_SECONDS} s from native/fuzz/corpus"
  configure build/native-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CLANG_C" \
    -DCMAKE_CXX_COMPILER="$CLANG_CXX" -DSPOOF_BUILD_TESTS=OFF -DSPOOF_BUILD_FUZZ=ON \
    -DSPOOF_SANITIZE=fuzzer-no-link,address,undefined
  cmake --build build/native-fuzz -j "$JOBS" --target frontend_fuzz
  local work=build/native-fuzz/corpus
  mkdir -p "$work"
  # The first directory receives new inputs; the committed seed corpus is only read.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build/native-fuzz/native/fuzz/frontend_fuzz "$work" native/fuzz/corpus \
    -max_total_time="$FUZZ_SECONDS" -timeout=20 -rss_limit_mb=2048 -max_len=4096 \
    -artifact_prefix=build/native-fuzz/ -print_final_stats=1 2>&1 | tail -25
  return "${PIPESTATUS[0]}"
}

start=$SECONDS
for lane in "${LANES[@]}"; do
  t0=$SECONDS
  "lane_$lane"
  echo "-- lane $lane passed in $((SECONDS - t0)) s"
done
echo "== native lanes passed (${LANES[*]}) in $((SECONDS - start)) s"
