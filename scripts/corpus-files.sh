#!/usr/bin/env bash
# Prints the prose files of a fortunes-style corpus folder, one path per line
# (not the .dat indexes, the .u8 links, ASCII art, Perl code or the
# untranslated file): the tiny base's pretraining corpus (scripts/tiny-base-job.sh)
# and the demo router's topic words (scripts/demo.sh).
# Usage: scripts/corpus-files.sh [DIR]   (default /usr/share/games/fortunes)
set -euo pipefail
CORPUS=${1:-/usr/share/games/fortunes}
for f in "$CORPUS"/*; do
  name=$(basename "$f")
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  case "$name" in *.dat | art | ascii-art | perl | translate-me) continue ;; esac
  printf '%s\n' "$f"
done
