#!/usr/bin/env bash
# Installs the npm packages the tests use (tests/npm/package.json, exact
# versions from tests/npm/package-lock.json) into BUILD_DIR/npm/node_modules.
# Idempotent and safe to run from several tests at once: a lock serialises
# the installs, and a stamp holding the lock file's hash skips a repeat.
# Usage: scripts/npm-test-deps.sh BUILD_DIR   (prints BUILD_DIR/npm)
set -euo pipefail
src="$(cd "$(dirname "$0")/../tests/npm" && pwd)"
dest="$1/npm"
mkdir -p "$dest"
exec 9>"$dest/.install.lock"
flock 9
want="$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$dest/.stamp" 2>/dev/null)" != "$want" ] || [ ! -d "$dest/node_modules" ]; then
  cp "$src/package.json" "$src/package-lock.json" "$dest/"
  # --ignore-scripts: no package needs its install script (buf's binary comes
  # from its per-platform optional dependency).
  (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  echo "$want" >"$dest/.stamp"
fi
echo "$dest"
