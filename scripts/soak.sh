#!/usr/bin/env bash
# Soak / crash test of the real skillpack-server on 127.0.0.1, bounded in time.
#
#   scripts/soak.sh [BUILD_DIR]           SOAK_SECONDS (default 600), SOAK_STREAMS (6),
#                                         SOAK_OUT (BUILD_DIR/soak.json), SOAK_DIR (a temp folder)
#
# Makes a tiny base model, a pack for it and one for another base (with the
# project's CLI), then runs scripts/soak.py: concurrent streams with client
# cancels and short deadlines, uploads killed with SIGKILL mid-way, crafted
# bad files and requests, RSS sampled throughout; at the end /metrics is
# compared with the client's counts, the server must exit 0 on SIGTERM and the
# pack store must hold no .part file and only packs that verify. Writes the
# raw result to SOAK_OUT; exits non-zero when any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
BIN="$BUILD_DIR/cli/skillpack"
SECONDS_TOTAL=${SOAK_SECONDS:-600}
OUT=${SOAK_OUT:-$BUILD_DIR/soak.json}
for b in "$BIN" "$BUILD_DIR/server/skillpack-server"; do
  [ -x "$b" ] || { echo "soak: $b is missing (make build first)" >&2; exit 2; }
done
export OMP_WAIT_POLICY=PASSIVE
WORK=${SOAK_DIR:-$(mktemp -d /tmp/skillpack-soak.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
echo "soak: work folder $WORK, ${SECONDS_TOTAL} s"

tiny() {  # tiny OUT SEED [LAYERS]
  [ -f "$1/config.json" ] || "$BIN" model init-tiny --out "$1" --layers "${3:-2}" --hidden 64 --heads 4 --kv-heads 2 \
    --seed "$2" >/dev/null
}
tiny "$WORK/base" 1
tiny "$WORK/tuned" 2
tiny "$WORK/other" 3 3
tiny "$WORK/other-tuned" 4 3
[ -f "$WORK/soak-a.skillpack" ] || "$BIN" pack create --base "$WORK/base" --tuned "$WORK/tuned" --name soak-a \
  -o "$WORK/soak-a.skillpack" --threads 1 >/dev/null 2>&1
[ -f "$WORK/foreign.skillpack" ] || "$BIN" pack create --base "$WORK/other" --tuned "$WORK/other-tuned" \
  --name soak-foreign -o "$WORK/foreign.skillpack" --threads 1 >/dev/null 2>&1
mkdir -p "$WORK/pb"
protoc -I proto --python_out "$WORK/pb" proto/skillpack/v1/inference.proto proto/skillpack/v1/admin.proto
rm -rf "$WORK/run"
/usr/bin/python3 scripts/soak.py --build "$BUILD_DIR" --model "$WORK/base" --other-model "$WORK/other" \
  --pack "$WORK/soak-a.skillpack" --foreign-pack "$WORK/foreign.skillpack" --work "$WORK/run" --pb "$WORK/pb" \
  --seconds "$SECONDS_TOTAL" --streams "${SOAK_STREAMS:-6}" --out "$OUT"
