#!/usr/bin/env bash
# Prints the trainer job that pretrains the tiny world's base (`make demo`,
# step 1): a 4-layer, hidden-192 Llama on the `fortunes` package's prose plus
# a 5% mixture of every built-in task's training examples.
#   usage: scripts/tiny-base-job.sh [STEPS [THREADS [CORPUS_DIR]]]
# STEPS defaults to the demo's 250 (≈1M tokens); bench/pretrain-length.sh
# runs the same recipe longer.
set -euo pipefail
STEPS=${1:-250}
THREADS=${2:-2}
CORPUS=${3:-/usr/share/games/fortunes}

# The corpus: every fortunes file of prose (scripts/corpus-files.sh), as a JSON list.
list=""
while IFS= read -r f; do
  list="$list${list:+, }\"$f\""
done < <(bash "$(dirname "$0")/corpus-files.sh" "$CORPUS")
[ -n "$list" ] || { echo "no corpus in $CORPUS (install the 'fortunes' package: make deps)" >&2; exit 1; }

tasks_json='"add", "reverse", "sort", "kv", "caesar"'  # every built-in task: the base knows their formats
cat <<JOB
{
  "name": "tiny-base", "seed": 1, "threads": $THREADS,
  "base_model": {"tiny": {"layers": 4, "hidden": 192, "heads": 6, "kv_heads": 2, "seed": 1}},
  "stages": {
    "pretrain": {"corpus": [$list], "held_out_fraction": 0.01,
                 "mixture": {"tasks": [$tasks_json], "fraction": 0.05},
                 "steps": $STEPS, "batch_size": 32, "lr": 4e-3, "warmup_steps": 20, "min_lr_ratio": 0.1,
                 "grad_clip": 1.0, "max_seq_len": 128, "checkpoint_every": 50}
  }
}
JOB
