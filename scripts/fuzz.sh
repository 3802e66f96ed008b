#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan +
# libFuzzer) in their own build folder and runs each for FUZZ_SECONDS.
#
#   scripts/fuzz.sh [BUILD_DIR] [SECONDS]        (make fuzz FUZZ_SECONDS=N)
#   FUZZ_TARGETS="pack_format router" ...        only these targets
#   FUZZ_BUILD_ONLY=1 ...                        build, do not run
#   FUZZ_NO_BUILD=1 ...                          run what is built
#
# Each target starts from its committed seed corpus tests/fuzz/corpus/<t>/
# plus what earlier runs found (BUILD_DIR/corpus/<t>/, never committed on its
# own). A crash, leak, timeout (> FUZZ_TIMEOUT s for one input) or memory
# blow-up (> FUZZ_RSS_MB) fails the run; the input is kept in
# BUILD_DIR/crashes/<t>/. Per-target figures (execs, coverage, corpus) go to
# BUILD_DIR/fuzz_results.json (or FUZZ_RESULTS).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
TIMEOUT=${FUZZ_TIMEOUT:-10}
RSS_MB=${FUZZ_RSS_MB:-3072}
ALL_TARGETS="safetensors pack_format router tokenizer job_spec chat_template"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
JOBS=${JOBS:-$(nproc)}

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link"
FLAGS="-O1 -g -fno-omit-frame-pointer $SAN"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS_RELWITHDEBINFO="" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="" -DCMAKE_EXE_LINKER_FLAGS="$SAN" \
    -DSKILLPACK_FUZZ=ON -DSKILLPACK_BUILD_TESTS=OFF -DSKILLPACK_WITH_CUDA=OFF >/dev/null || exit 1
fi
build_start=$(date +%s)
targets=()
for t in $TARGETS; do targets+=("${t}_fuzz"); done
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]}" || exit 1
  echo "fuzz: build took $(($(date +%s) - build_start)) s"
fi
[ -n "${FUZZ_BUILD_ONLY:-}" ] && exit 0

# UBSan stops at its first report (-fno-sanitize-recover) with a stack;
# leaks are checked per input by libFuzzer.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_odr_violation=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# One thread for libtorch inside the targets: the machine is shared.
export OMP_NUM_THREADS=1
failed=0
results="["
for t in $TARGETS; do
  corpus="$BUILD_DIR/corpus/$t"
  crashes="$BUILD_DIR/crashes/$t"
  log="$BUILD_DIR/fuzz_$t.log"
  mkdir -p "$corpus" "$crashes"
  echo "fuzz: $t for ${SECONDS_EACH} s (log $log)"
  start=$(date +%s)
  "$BUILD_DIR/tests/fuzz/${t}_fuzz" -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
    -malloc_limit_mb="$RSS_MB" -print_final_stats=1 -artifact_prefix="$crashes/" \
    "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  wall=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  files=$(find "$corpus" -type f | wc -l)
  found=$(find "$crashes" -type f | wc -l)
  verdict=ok
  if [ $rc -ne 0 ]; then
    verdict=FAILED
    failed=1
    grep -E 'ERROR: |SUMMARY: |FUZZ_CHECK|runtime error|Test unit written' "$log" | head -8
  fi
  echo "fuzz: $t $verdict: ${execs:-0} execs in ${wall} s, cov ${cov:-0} ft ${ft:-0}, corpus $files files, peak RSS ${peak:-0} MB, $found inputs in $crashes"
  [ "$results" != "[" ] && results+=","
  results+=$(printf '\n  {"target": "%s", "seconds": %s, "exit_code": %s, "execs": %s, "cov": %s, "ft": %s, "corpus_files": %s, "peak_rss_mb": %s, "crash_files": %s}' \
    "$t" "$wall" "$rc" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$files" "${peak:-0}" "$found")
done
results+=$'\n]'
echo "$results" >"${FUZZ_RESULTS:-$BUILD_DIR/fuzz_results.json}"
exit $failed
