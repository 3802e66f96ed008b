#!/usr/bin/env bash
# How much of a build sees libtorch: translation units whose header
# dependencies (ninja's deps log) include ATen / torch / c10 headers, split by
# folder. Usage: scripts/build-stats.sh [BUILD_DIR]  (after a full build).
set -euo pipefail
build=${1:-build}
ninja -C "$build" -t deps | awk '
  /^[^ ].*\.o: #deps/ { obj = $1; sub(":$", "", obj); total++; seen = 0; next }
  /^    / { if (!seen && ($1 ~ /\/(ATen|torch|c10)\//)) { seen = 1; torch++; print obj > "/dev/stderr" } }
  END { printf "%d of %d object files see libtorch headers\n", torch, total }' 2> >(sed -E 's#^([^/]+/)?CMakeFiles/([^.]+)\.dir/.*#\2#' | sort | uniq -c | sort -rn >&2)
