#!/usr/bin/env bash
# `make demo`: the whole story on the tiny world.
#   1. a tiny Llama base model, pretrained by our trainer on English text (the
#      `fortunes` package's files) plus a 5% mixture of the tasks' training
#      examples (made once, then reused)
#   2. one SkillPack per synthetic task, made by the trainer (SFT -> compress)
#   3. a router trained on each task's prompts and natural phrasings of them plus
#      general prompts
#   4. skillpack-server with the packs and the router on 127.0.0.1
#   5. AUTO requests of each task and general ones: the chosen pack, the router's
#      score, the answer, and whether the task's verifier accepts it; where a few
#      natural phrasings are routed
# Everything made in steps 1-3 is cached under $SKILLPACK_DEMO_DIR (demo-data/).
# SKILLPACK_DEMO_BASE=random uses the first tiny world's base instead: random
# weights, 2 layers, hidden 128 (no pretraining).
set -euo pipefail
BUILD_DIR=${1:-build}
BIN="$BUILD_DIR/cli/skillpack"
SERVER="$BUILD_DIR/server/skillpack-server"
TRAINER="$BUILD_DIR/trainer/skillpack-trainer"
DATA=${SKILLPACK_DEMO_DIR:-demo-data}
BASE_KIND=${SKILLPACK_DEMO_BASE:-pretrained}
CORPUS=${SKILLPACK_DEMO_CORPUS:-/usr/share/games/fortunes}
TASKS=(${SKILLPACK_DEMO_TASKS:-reverse sort})
THREADS=${SKILLPACK_DEMO_THREADS:-2}  # libtorch threads of the trainer jobs
export OMP_WAIT_POLICY=PASSIVE  # no busy-waiting BLAS threads on a small machine
mkdir -p "$DATA/jobs" "$DATA/runs" "$DATA/packs" "$DATA/recipes"
DATA=$(cd "$DATA" && pwd)
t_start=$(date +%s)

say() { printf '\n== %s\n' "$*"; }

# 1. The base model. Everything made in steps 1-3 is kept with its recipe (the job or
# command that made it, and what it was made from) in recipes/ and made again when the
# recipe changes: switching SKILLPACK_DEMO_BASE, the corpus or a job's settings never
# reuses what an older recipe made.
recipe_matches() { [ -e "$1" ] && [ "$(cat "$DATA/recipes/$2" 2>/dev/null)" = "$3" ]; }  # PATH NAME RECIPE
sha() { sha256sum < "$1" | cut -d' ' -f1; }
# A trainer run resumes from its directory's checkpoints (an interrupted demo goes on
# where it stopped), so a directory left by another recipe is cleared first.
run_job() {  # NAME JOB RECIPE
  local dir="$DATA/runs/$1"
  if [ "$(cat "$dir/demo-recipe" 2>/dev/null)" != "$3" ]; then
    rm -rf "$dir" && mkdir -p "$dir" && printf '%s\n' "$3" > "$dir/demo-recipe"
  fi
  "$TRAINER" run "$2" --out "$dir" --no-progress
}
base_init=(model init-tiny --layers 2 --hidden 128 --heads 4 --kv-heads 2 --seed 1)
if [ "$BASE_KIND" = random ]; then
  base_recipe="random | ${base_init[*]}"
else
  bash "$(dirname "$0")/tiny-base-job.sh" 250 "$THREADS" "$CORPUS" > "$DATA/jobs/base.json"
  base_recipe="pretrained | job $(sha "$DATA/jobs/base.json")"
fi
if ! recipe_matches "$DATA/base" base "$base_recipe"; then
  rm -rf "$DATA/base" "$DATA/base.tmp"
  if [ "$BASE_KIND" = random ]; then
    say "creating the tiny base model (random weights)"
    "$BIN" "${base_init[@]}" --out "$DATA/base.tmp"
  else
    say "pretraining the tiny base model (4 layers, hidden 192) on $CORPUS"
    run_job base "$DATA/jobs/base.json" "$base_recipe"
    cp -r "$DATA/runs/base/model" "$DATA/base.tmp"
  fi
  mv "$DATA/base.tmp" "$DATA/base"
  printf '%s\n' "$base_recipe" > "$DATA/recipes/base"
fi
base_sha=$(sha "$DATA/base/model.safetensors")

# 2. One pack per task: SFT on the task, then module-aware compression of the delta.
# The random base learns reverse / sort to ~97% held-out exact match in 600 steps at
# lr 3e-3; a pretrained base is fine-tuned at a lower rate (a refinement, not a
# rewrite: at 3e-3 its delta outweighed the base, |dW|/|W| 1.1, and reverse reached
# only 18%), for longer (bench/README.md, "Tiny world v2").
if [ "$BASE_KIND" = random ]; then SFT_STEPS=600 SFT_LR=3e-3; else SFT_STEPS=1000 SFT_LR=1e-3; fi
for task in "${TASKS[@]}"; do
  pack="$DATA/packs/$task.skillpack"
  cat > "$DATA/jobs/$task.json" <<JOB
{
  "name": "$task-pack",
  "seed": 1,
  "threads": $THREADS,
  "base_model": "$DATA/base",
  "task": {"name": "$task", "held_out": 100, "train_examples": 20000},
  "stages": {
    "sft": {"steps": $SFT_STEPS, "batch_size": 32, "lr": $SFT_LR, "warmup_steps": 30, "min_lr_ratio": 0.1,
            "weight_decay": 0.0, "grad_clip": 1.0, "max_seq_len": 32},
    "compress": {"name": "$task", "description": "the '$task' synthetic task", "tags": ["demo", "$task"],
                 "config": {"alpha": 0.5, "beta": 0.9}}
  }
}
JOB
  pack_recipe="job $(sha "$DATA/jobs/$task.json") base $base_sha"
  recipe_matches "$pack" "pack-$task" "$pack_recipe" && continue
  say "training the '$task' pack (SFT, then compression)"
  run_job "$task" "$DATA/jobs/$task.json" "$pack_recipe"
  cp "$DATA/runs/$task/$task.skillpack" "$pack.tmp" && mv "$pack.tmp" "$pack"
  printf '%s\n' "$pack_recipe" > "$DATA/recipes/pack-$task"
done
"$BIN" pack inspect "$DATA/packs/${TASKS[0]}.skillpack" | sed -n 1,6p  # sed reads it all: no SIGPIPE under pipefail

# 3. The router: each task's raw prompts, paraphrases and composed phrasings (label =
# its pack) and general prompts (label none), some over topic words of the base's own
# corpus, from `skillpack-trainer make-router-data`; features: layer-0 states pooled by
# mean and by surprisal, and what WordNet says the prompt's words mean (lexicon; bench/README.md,
# Table 4 and "The lexical block mended"); with --contexts, phrasings told inside a situation
# ("Contexts against the baseline on a twelfth held-out set"). The labelled prompts are made
# on every run (~2 s) and the router is retrained when they, its options or the base change:
# a trainer that holds out a new set of phrasings leaves them out of the data, and the
# cached router must not have trained on them.
topic_files=$(bash "$(dirname "$0")/corpus-files.sh" "$CORPUS" | paste -sd,)
labelled="$DATA/router-data.jsonl"
"$TRAINER" make-router-data --tasks "$(IFS=,; echo "${TASKS[*]}")" --n 200 --general 400 --seed 3 \
  --corpus-topics "$topic_files" --contexts --out "$labelled.new" > /dev/null
router_options=(--layers 0 --pooling "mean,surprisal,lexicon" --seed 1)
router_recipe="data $(sha "$labelled.new") base $base_sha | router train ${router_options[*]}"
if ! recipe_matches "$DATA/router.safetensors" router "$router_recipe"; then
  say "training the router"
  mv "$labelled.new" "$labelled"
  echo "$(wc -l < "$labelled") labelled prompts: $labelled"
  "$BIN" router train --model "$DATA/base" --data "$labelled" -o "$DATA/router.safetensors" "${router_options[@]}"
  printf '%s\n' "$router_recipe" > "$DATA/recipes/router"
else
  rm -f "$labelled.new"
fi

# 4. The server, on ephemeral ports.
say "starting skillpack-server"
token="$DATA/admin-token"
[ -f "$token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token"
log="$DATA/server.log"
fifo=$(mktemp -u)
mkfifo "$fifo"
"$SERVER" --model "$DATA/base" --packs "$DATA/packs" --router "$DATA/router.safetensors" \
  --grpc-address 127.0.0.1 --grpc-port 0 --metrics-address 127.0.0.1 --metrics-port 0 \
  --admin-token-file "$token" > "$fifo" 2> "$log" &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -f "$fifo"' EXIT
read -r -t 120 listening < "$fifo" || { echo "server did not start; see $log"; cat "$log"; exit 1; }
echo "$listening"
addr=$(echo "$listening" | sed -n 's/^listening grpc=\([^ ]*\).*/\1/p')
metrics=$(echo "$listening" | sed -n 's/.*metrics=\([^ ]*\).*/\1/p')
"$BIN" client packs list --server "$addr" --admin-token-file "$token"

# 5. AUTO requests: the router picks the pack.
say "AUTO requests (the router picks the pack)"
printf '%-8s %-30s %-8s %-7s %-16s %-10s %s\n' task prompt pack score answer expected verifier
ok=0; total=0
summary=$(mktemp)
ask() {  # ask TASK PROMPT EXPECTED
  local answer pack score
  local flags=(--max-new-tokens 24) width=16
  # General prompts: the base's own text, sampled (greedy decoding of a model this
  # small loops on "the the the").
  [ -n "$3" ] || { flags=(--max-new-tokens 64 --temperature 0.7 --seed 1); width=64; }
  answer=$("$BIN" client generate --server "$addr" --prompt "$2" "${flags[@]}" --route-scores 2> "$summary")
  # Printable ASCII only, on one line (a random base answers in arbitrary bytes).
  local shown
  shown=$(printf '%s' "$answer" | LC_ALL=C tr -c '[:print:]' ' ' | cut -c1-$width)
  pack=$(sed -n 's/.*| packs: \([^:]*\).*$/\1/p' "$summary")
  score=$(awk '/^score/ {print $3; exit}' "$summary")
  local verdict="-"
  if [ -n "$3" ]; then
    total=$((total + 1))
    if [ "$answer" = "$3" ]; then verdict="accepted"; ok=$((ok + 1)); else verdict="rejected"; fi
  fi
  if [ -n "$3" ]; then
    printf '%-8s %-30s %-8s %-7s %-16s %-10s %s\n' "$1" "$2" "$pack" "$score" "$shown" "$3" "$verdict"
  else
    printf '%-8s %-30s %-8s %-7s %s\n' "$1" "$2" "$pack" "$score" "$shown"
  fi
}
for task in "${TASKS[@]}"; do
  "$TRAINER" make-data --task "$task" --split held_out --n 6 --seed 9 --out "$DATA/held-$task.jsonl"
  while IFS= read -r line; do
    prompt=$(echo "$line" | sed -n 's/^{"prompt":"\(.*\)","response":"\(.*\)"}$/\1/p')
    expected=$(echo "$line" | sed -n 's/^{"prompt":"\(.*\)","response":"\(.*\)"}$/\2/p')
    ask "$task" "$prompt" "$expected"
  done < "$DATA/held-$task.jsonl"
done
ask general "What is the capital of Spain?" ""
ask general "Write a haiku about autumn." ""
ask general "Tell me something wise about work." ""
echo
echo "verifier accepted $ok of $total task answers"

say "natural phrasings: where the router sends them (the packs answer their task's own format)"
routed_ok=0
for case in "reverse|Could you flip the letters of lantern around?" "reverse|Write kestrel backwards, please." \
  "sort|Please put the digits 8351 in order." "sort|Sort 9042 from smallest to largest" \
  "none|What is the capital of Spain?" "none|Recommend a film for tonight."; do
  want=${case%%|*} prompt=${case#*|}
  got=$("$BIN" client route --server "$addr" --prompt "$prompt" 2>/dev/null | sed -n 's/^packs: \([^:]*\).*/\1/p')
  [ "$got" = "$want" ] && routed_ok=$((routed_ok + 1))
  printf '%-48s %-8s (a person would say: %s)\n' "$prompt" "$got" "$want"
done
echo "routed as a person would: $routed_ok of 6"

say "the same request naming a pack explicitly, and with no pack"
first=$(head -n 1 "$DATA/held-${TASKS[0]}.jsonl" | sed -n 's/^{"prompt":"\(.*\)","response".*/\1/p')
echo "explicit ${TASKS[0]}: $("$BIN" client generate --server "$addr" --prompt "$first" --max-new-tokens 24 --pack "${TASKS[0]}" 2>/dev/null)"
echo "no pack:          $("$BIN" client generate --server "$addr" --prompt "$first" --max-new-tokens 24 --no-packs 2>/dev/null | LC_ALL=C tr -c '[:print:]' '?')"

say "a few of the server's metrics (http://$metrics/metrics)"
exec 3<>"/dev/tcp/${metrics%:*}/${metrics#*:}"
printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
grep -E '^skillpack_(router_decisions_total|requests_total|pack_cache_hits_total)' <&3 || true
exec 3<&-
rm -f "$summary"
echo
echo "demo finished in $(( $(date +%s) - t_start )) s (models, packs and router are cached in $DATA)"
