#!/usr/bin/env bash
# `make demo` (scripts/demo.sh) end to end on the random tiny base with one task,
# three times in one data folder: the first run makes the base, the pack and the
# router and the server answers; the second reuses all three; the third changes
# the pack's job (the trainer's thread count) and only the pack is made again.
#   usage: tests/e2e/demo_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD_DIR=$(cd "$1" && pwd)
SOURCE_DIR=$(cd "$2" && pwd)
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
demo() {  # THREADS LOG
  SKILLPACK_DEMO_DIR="$data" SKILLPACK_DEMO_BASE=random SKILLPACK_DEMO_TASKS=reverse \
    SKILLPACK_DEMO_THREADS="$1" bash "$SOURCE_DIR/scripts/demo.sh" "$BUILD_DIR" > "$2" 2>&1 ||
    { cat "$2"; echo "FAIL: scripts/demo.sh exited non-zero"; exit 1; }
}
has() { grep -qF -- "$2" "$1"; }  # LOG TEXT

demo 2 "$data/run1.log"
for made in "creating the tiny base model" "training the 'reverse' pack" "training the router"; do
  has "$data/run1.log" "== $made" || fail "first run: no '$made'"
done
# The server answered: six held-out prompts went through the router to a pack.
grep -qE '^verifier accepted [0-9]+ of 6 task answers$' "$data/run1.log" || fail "first run: not 6 task answers"
for recipe in base pack-reverse router; do
  [ -s "$data/recipes/$recipe" ] || fail "first run: no recipe for $recipe"
done
pack_sum=$(sha256sum < "$data/packs/reverse.skillpack")

demo 2 "$data/run2.log"
if grep -E '^== (creating|pretraining|training)' "$data/run2.log"; then fail "second run made something again"; fi
[ "$(sha256sum < "$data/packs/reverse.skillpack")" = "$pack_sum" ] || fail "second run: the pack changed"
has "$data/run2.log" "verifier accepted" || fail "second run: no verifier line"

demo 1 "$data/run3.log"
has "$data/run3.log" "== training the 'reverse' pack" || fail "third run: the pack's job changed but it was not retrained"
if has "$data/run3.log" "== creating the tiny base model"; then fail "third run: the base was made again"; fi
if has "$data/run3.log" "== training the router"; then fail "third run: the router was retrained"; fi
grep -q '"threads": 1' "$data/jobs/reverse.json" || fail "third run: the pack's job does not say 1 thread"
[ "$(cat "$data/runs/reverse/demo-recipe")" = "$(cat "$data/recipes/pack-reverse")" ] ||
  fail "third run: the run folder's recipe is not the pack's"

if [ "$failures" -ne 0 ]; then
  for log in "$data"/run*.log; do echo "--- $log"; cat "$log"; done
  exit 1
fi
echo "demo_test: 3 runs, caching by recipe checked"
