#!/usr/bin/env bash
# `make bench`: runs every benchmark with the arguments bench/README.md lists,
# each writing its raw JSON (with the machine) to bench/results/.
# usage: scripts/bench.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
export OMP_WAIT_POLICY=PASSIVE
"$build/bench/model_bench" --shapes tiny,1.1b --prompt-len 128 --decode-steps 16
"$build/bench/serving_bench" --shapes tiny --sets 1,2,4,8,16 --dists uniform,zipf
"$build/bench/serving_bench" --shapes 1.1b --sets 1,8,16 --dists uniform --modes base,factorized,auto
"$build/bench/router_bench" --shapes tiny,1.1b --layers 0,1
"$build/bench/pack_bench"
"$build/bench/trainer_bench"
