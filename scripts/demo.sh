#!/usr/bin/env bash
# `make demo`: makes (or reuses) a tiny model and generates text with it.
set -euo pipefail
BUILD_DIR=${1:-build}
BIN="$BUILD_DIR/server/skillpack"
DATA=${SKILLPACK_DEMO_DIR:-demo-data}
MODEL="$DATA/tiny-base"

if [ ! -f "$MODEL/config.json" ]; then
  echo "== creating a tiny Llama model in $MODEL"
  "$BIN" model init-tiny --out "$MODEL" --layers 4 --hidden 256 --heads 8 --kv-heads 4 --seed 1
fi

echo "== greedy generation (random weights: expect gibberish, deterministically)"
"$BIN" generate --model "$MODEL" --prompt "The quick brown fox" --max-new-tokens 32
echo "== sampled generation with a seed, stopping at a newline"
"$BIN" generate --model "$MODEL" --prompt "Hello" --max-new-tokens 32 --temperature 0.8 --top-p 0.9 --seed 7 --stop $'\n'
echo "== chat template (llama3 family)"
"$BIN" generate --model "$MODEL" --chat "What is 2+2?" --max-new-tokens 16
