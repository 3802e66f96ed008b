#!/usr/bin/env bash
# Builds the whole tree (libraries, binaries, tests) with clang and a sanitizer
# in its own build folder, then runs the unit and e2e tests under it.
#
#   scripts/sanitize.sh asan [BUILD_DIR]   ASan + UBSan (build-asan)   make asan
#   scripts/sanitize.sh tsan [BUILD_DIR]   ThreadSanitizer (build-tsan) make tsan
#   CTEST_ARGS="-R rpc_" ...               a subset of the tests (one that
#                                          selects none fails the run)
#   SANITIZE_TARGETS="skillpack-server ..." build only these targets (default all)
#
# libtorch, gRPC and the other Debian libraries are not instrumented. The
# suppression files in tests/sanitizers/ hold only reports from inside those
# libraries (each entry says why); a report from our code is a bug to fix.
# TSan runs with OMP_NUM_THREADS=1: libgomp's thread pool synchronises with
# futexes TSan does not see, and its reports are about that, not about us.
# The same would hold for absl::Mutex, which we and gRPC lock with, and for
# gRPC's own hand-over of calls, buffers and callback tags between its
# threads (completion queues, executors, atomics): Debian's abseil and gRPC
# are not built with TSan, so TSan would see none of that ordering and report
# every access it guards (bench/README.md, "Sanitizers"). So tsan first builds
# Debian's abseil and gRPC sources with -fsanitize=thread into cached
# prefixes (scripts/build-sanitized-abseil.sh, scripts/build-sanitized-grpc.sh,
# ~/.cache/skillpack) and links every binary with a DT_RPATH to both: the
# binaries load the instrumented libgrpc, libgrpc++, libgpr, libupb,
# libaddress_sorting and libabsl_*, and TSan sees their locks and atomics.
# (DT_RPATH rather than LD_LIBRARY_PATH: it holds for the servers the e2e
# tests start whatever their environment, and it leaves Python's grpcio,
# which loads Debian's abseil and gRPC core, alone.)
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: sanitize.sh asan|tsan [BUILD_DIR]}
BUILD_DIR=${2:-build-$MODE}
JOBS=${JOBS:-$(nproc)}
SUPP=$(pwd)/tests/sanitizers
case "$MODE" in
  # The same flags as scripts/fuzz.sh's build-fuzz/ (libFuzzer's coverage
  # hooks included, harmless outside a fuzz target): ccache then shares every
  # library object between the two trees, and CI, which builds build-fuzz/
  # anyway, compiles only the rest (server, CLI, trainer, tests) for asan.
  asan) SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link" ;;
  tsan) SAN="-fsanitize=thread" ;;
  *) echo "sanitize.sh: unknown mode '$MODE' (asan or tsan)" >&2; exit 2 ;;
esac
FLAGS="-O1 -g -fno-omit-frame-pointer $SAN"
LINK="$SAN"
if [ "$MODE" = tsan ]; then
  TIMEFORMAT="sanitize: abseil with TSan took %0R s (CPU %0U s user + %0S s sys)"
  time ABSL_TSAN_LIB=$(JOBS=$JOBS bash scripts/build-sanitized-abseil.sh) || exit 1
  TIMEFORMAT="sanitize: gRPC with TSan took %0R s (CPU %0U s user + %0S s sys)"
  time GRPC_TSAN_LIB=$(JOBS=$JOBS bash scripts/build-sanitized-grpc.sh "$ABSL_TSAN_LIB") || exit 1
  LINK="$SAN -Wl,--disable-new-dtags -Wl,-rpath,$GRPC_TSAN_LIB -Wl,-rpath,$ABSL_TSAN_LIB"
  # The canary (tests/sanitizers/tsan_absl_canary.cc): a counter under
  # absl::Mutex is a race to TSan with Debian's abseil, and none with ours.
  mkdir -p "$BUILD_DIR"
  canary="clang++ -std=c++17 -O1 -g -fsanitize=thread $SUPP/tsan_absl_canary.cc $(pkg-config --libs absl_synchronization)"
  $canary -o "$BUILD_DIR/tsan-canary-debian" && $canary -o "$BUILD_DIR/tsan-canary" $LINK || exit 1
  # With our suppressions: abseil's own Waiter::Post report (tsan.supp) shows
  # up in the canary too whenever its two threads really contend.
  canary_opts="exitcode=66:suppressions=$SUPP/tsan.supp"
  # check_canary LIB WHAT PREFIX DEBIAN_BIN OURS_BIN: the canary built against
  # Debian's LIB (DEBIAN_BIN) must report a race, else it checks nothing; the
  # one built against PREFIX (OURS_BIN) none, else TSan does not see WHAT.
  check_canary() {
    local lib=$1 what=$2 prefix=$3 debian_bin=$4 ours_bin=$5 out
    if TSAN_OPTIONS=$canary_opts "$debian_bin" >/dev/null 2>&1; then
      echo "sanitize: the $lib canary reports nothing even against Debian's $lib; it checks nothing" >&2
      exit 1
    fi
    if ! out=$(TSAN_OPTIONS=$canary_opts "$ours_bin" 2>&1); then
      echo "$out" >&2
      echo "sanitize: TSan does not see $what with $prefix (canary above)" >&2
      exit 1
    fi
    echo "sanitize: TSan sees $what (canary: races with Debian's $lib, none with $prefix)"
  }
  check_canary abseil absl::Mutex "$ABSL_TSAN_LIB" "$BUILD_DIR/tsan-canary-debian" "$BUILD_DIR/tsan-canary"
  # The second canary (tests/sanitizers/tsan_grpc_canary.cc): a callback-API
  # echo server and client, whose accesses only gRPC's own queues and atomics
  # order, give races with Debian's gRPC (both built against our abseil) and
  # none with ours. With our suppressions, which hold nothing for gRPC any more.
  canary="clang++ -std=c++17 -O1 -g -fsanitize=thread $SUPP/tsan_grpc_canary.cc $(pkg-config --libs grpc++)"
  $canary -o "$BUILD_DIR/tsan-grpc-canary-debian" -Wl,--disable-new-dtags -Wl,-rpath,"$ABSL_TSAN_LIB" &&
    $canary -o "$BUILD_DIR/tsan-grpc-canary" $LINK || exit 1
  check_canary gRPC "gRPC's hand-overs" "$GRPC_TSAN_LIB" "$BUILD_DIR/tsan-grpc-canary-debian" \
    "$BUILD_DIR/tsan-grpc-canary"
fi
# The e2e tests' waits for the servers and CLIs they start (start, exit after
# SIGTERM, health, load draining) are sized for the Release build; these
# builds run several times slower (TSan ~5-15x, ASan ~2-3x), so every such
# wait is stretched by this factor (tests/e2e/shell.h, python_client_test.py),
# and so is ctest's own limit per test (SKILLPACK_CTEST_TIMEOUT, 900 s in the
# Release build; tests/CMakeLists.txt), which the trainer's SFT and
# distillation e2e tests ran past under ASan on a loaded machine.
if [ "$MODE" = asan ]; then
  export SKILLPACK_TEST_TIMEOUT_SCALE=${SKILLPACK_TEST_TIMEOUT_SCALE:-3}
else
  export SKILLPACK_TEST_TIMEOUT_SCALE=${SKILLPACK_TEST_TIMEOUT_SCALE:-10}
fi
CTEST_TIMEOUT=$(awk -v s="$SKILLPACK_TEST_TIMEOUT_SCALE" 'BEGIN {
  if (s !~ /^[0-9]+(\.[0-9]+)?$/ || s < 1 || s > 1000) exit 1
  t = 900 * s; printf "%d", (t == int(t)) ? t : int(t) + 1 }') || {
  echo "sanitize: SKILLPACK_TEST_TIMEOUT_SCALE='$SKILLPACK_TEST_TIMEOUT_SCALE' is not a number from 1 to 1000" >&2
  exit 2
}
# kernels/ is built too where CMake finds nvcc, with clang as nvcc's host
# compiler and the same flags, so the kernels test's host cases (launcher
# argument checks, the CPU twins) run instrumented, launchers included; its
# GPU cases skip without a device. Only sp_kernels and that test use CUDA, so
# every other object is the same as without it. nvcc's -Xcompiler splits
# at commas: each sanitizer goes in a flag of its own.
CUDA_HOST_FLAGS=""
for flag in $FLAGS; do
  case "$flag" in
    -fsanitize=*) for s in $(echo "${flag#-fsanitize=}" | tr ',' ' '); do CUDA_HOST_FLAGS+=",-fsanitize=$s"; done ;;
    *) CUDA_HOST_FLAGS+=",$flag" ;;
  esac
done
CUDA_FLAGS="-Xcompiler=${CUDA_HOST_FLAGS#,}"
# Reconfigured whenever the flags (e.g. another abseil or gRPC prefix) or the timeout change.
CONFIG="$FLAGS $LINK timeout=$CTEST_TIMEOUT cuda=$CUDA_FLAGS"
if [ ! -f "$BUILD_DIR/build.ninja" ] || [ "$(cat "$BUILD_DIR/.sanitize-flags" 2>/dev/null)" != "$CONFIG" ]; then
  # From a fresh cache: CMake keeps the compilers it found (nvcc's host
  # compiler among them) in the cache and CMakeFiles/<version>/. Objects stay
  # (and ccache has them).
  rm -rf "$BUILD_DIR/CMakeCache.txt" "$BUILD_DIR"/CMakeFiles/[0-9]* "$BUILD_DIR/CMakeFiles/CheckCUDA"
  # CUDAHOSTCXX, not -DCMAKE_CUDA_HOST_COMPILER: with the latter, Debian's
  # CMake 3.25 still ran its first nvcc checks with nvcc's default host
  # compiler, gcc, which rejects -fsanitize=fuzzer-no-link.
  CC=clang CXX=clang++ CUDAHOSTCXX="$(command -v clang++)" cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS_RELWITHDEBINFO="" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="" -DCMAKE_EXE_LINKER_FLAGS="$LINK" -DSKILLPACK_WITH_CUDA=ON \
    -DCMAKE_CUDA_FLAGS="$CUDA_FLAGS" \
    -DSKILLPACK_CTEST_TIMEOUT="$CTEST_TIMEOUT" >/dev/null || exit 1
  echo "$CONFIG" >"$BUILD_DIR/.sanitize-flags"
fi
# Wall and CPU seconds of the build and of the tests (bench/results/sanitizers_*.json).
TIMEFORMAT="sanitize: $MODE build took %0R s (CPU %0U s user + %0S s sys)"
time cmake --build "$BUILD_DIR" -j "$JOBS" ${SANITIZE_TARGETS:+--target $SANITIZE_TARGETS} || exit 1
if [ "$MODE" = tsan ]; then
  GRPC_LIBS='lib(grpc|gpr|upb|address_sorting)[^ ]*\.so'
  TSAN_LIBS="libabsl_|$GRPC_LIBS"
  # Every binary of the tree that loads abseil or gRPC (directly or through
  # libgrpc) must load only the instrumented libraries, with no symbol left
  # undefined; one Debian libabsl or libgrpc in the mix would hide its locks
  # and hand-overs from TSan again.
  checked=0
  for bin in $(find "$BUILD_DIR" -type f -perm -u+x ! -name '*.so*' ! -path '*/CMakeFiles/*' \
    ! -path '*/sanitizer-reports/*' ! -name 'tsan*-canary-debian'); do
    head -c 4 "$bin" | grep -q ELF || continue
    deps=$(ldd -r "$bin" 2>&1)
    echo "$deps" | grep -qE "$TSAN_LIBS" || continue
    bad=$(echo "$deps" | grep -E "libabsl_|undefined symbol" | grep -v "=> $ABSL_TSAN_LIB/" || true)
    bad+=$(echo "$deps" | grep -E "$GRPC_LIBS" | grep -v "=> $GRPC_TSAN_LIB/" || true)
    if [ -n "$bad" ]; then
      echo "sanitize: $bin does not resolve abseil to $ABSL_TSAN_LIB and gRPC to $GRPC_TSAN_LIB:" >&2
      echo "$bad" >&2
      exit 1
    fi
    checked=$((checked + 1))
  done
  echo "sanitize: $checked binaries load abseil from $ABSL_TSAN_LIB and gRPC from $GRPC_TSAN_LIB (ldd -r)"
fi
# Every report goes to a file in $REPORTS, from the test binaries and from
# the servers and CLIs the e2e tests start (whose exit status a test may not
# look at, e.g. a leak found when a server exits after SIGTERM); any file
# there fails the run, and is printed.
mkdir -p "$BUILD_DIR/sanitizer-reports"
REPORTS=$(cd "$BUILD_DIR/sanitizer-reports" && pwd)
rm -f "$REPORTS"/*
export OMP_WAIT_POLICY=PASSIVE
# Only the mode's own options: TSan's runtime also reads UBSAN_OPTIONS, whose
# log_path would otherwise name its reports.
if [ "$MODE" = asan ]; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_odr_violation=0:abort_on_error=0:suppressions=$SUPP/asan.supp:log_path=$REPORTS/asan}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$SUPP/lsan.supp:print_suppressions=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$SUPP/ubsan.supp:log_path=$REPORTS/ubsan}
else
  export TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$SUPP/tsan.supp:halt_on_error=0:exitcode=66:second_deadlock_stack=1:log_path=$REPORTS/tsan}
  export OMP_NUM_THREADS=1
fi
echo "sanitize: e2e waits scaled by SKILLPACK_TEST_TIMEOUT_SCALE=$SKILLPACK_TEST_TIMEOUT_SCALE, ctest's timeout $CTEST_TIMEOUT s a test"
# tools_* (format, layering, thread-safety analysis) run no binary of ours.
# Under tsan, deploy_docker_test is left out too: it checks that Debian
# packages the Dockerfiles install own every library the Release binaries
# load, and the TSan binaries load abseil and gRPC from the private prefixes
# above by design.
EXCLUDE='^tools_'
if [ "$MODE" = tsan ]; then EXCLUDE='^(tools_|deploy_docker_test$)'; fi
# A CTEST_ARGS that selects no test (a regex that matches nothing) fails the
# run instead of passing it with nothing checked: counted first, to say so
# clearly, and --no-tests=error for ctest itself.
selected=$(cd "$BUILD_DIR" && ctest -N -E "$EXCLUDE" ${CTEST_ARGS:-} | sed -n 's/^Total Tests: //p')
if [ "${selected:-0}" = 0 ]; then
  echo "sanitize: CTEST_ARGS='${CTEST_ARGS:-}' selects no test in $BUILD_DIR (ctest -N); nothing to run" >&2
  exit 1
fi
echo "sanitize: ctest selects $selected test(s)"
TIMEFORMAT="sanitize: $MODE tests took %0R s (CPU %0U s user + %0S s sys)"
time (cd "$BUILD_DIR" && ctest -j "$JOBS" --output-on-failure --no-tests=error -E "$EXCLUDE" ${CTEST_ARGS:-})
rc=$?
echo "sanitize: $MODE tests exit $rc"
reports=$(find "$REPORTS" -type f | sort)
if [ -n "$reports" ]; then
  for f in $reports; do echo "===== $f"; cat "$f"; done
  echo "sanitize: $MODE: $(echo "$reports" | wc -l) report file(s) in $REPORTS" >&2
  rc=1
else
  echo "sanitize: $MODE: no sanitizer reports"
fi
exit $rc
