#!/usr/bin/env bash
# Regenerates the tool-made seeds of tests/fuzz/corpus/ with the project's own
# CLI (small on purpose: libFuzzer mutates whole files). The hand-made seeds
# and regress-* inputs next to them are kept.
#   tests/fuzz/make_seeds.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build}/cli/skillpack
C=tests/fuzz/corpus
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
tiny() {  # OUT SEED [extra flags]
  local out=$1 seed=$2
  shift 2
  "$BIN" model init-tiny --out "$out" --layers 1 --hidden 16 --heads 2 --kv-heads 1 --intermediate 32 \
    --max-positions 64 --seed "$seed" "$@" >/dev/null
}
tiny "$T/base" 1
tiny "$T/tuned" 2
tiny "$T/tied" 3 --tie-embeddings

# safetensors: a model file as init-tiny writes it (untied and tied).
cp "$T/base/model.safetensors" "$C/safetensors/tool-init-tiny.safetensors"
cp "$T/tied/model.safetensors" "$C/safetensors/tool-init-tiny-tied.safetensors"

# tokenizer: tokenizer.json NUL tokenizer_config.json; and with the Llama-3
# Split pre-tokenizer before ByteLevel and a merge, as real models have.
{ cat "$T/base/tokenizer.json"; printf '\0'; cat "$T/base/tokenizer_config.json"; } >"$C/tokenizer/tool-init-tiny.json"
python3 - "$T/base/tokenizer.json" "$C/tokenizer/tool-init-tiny-split.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
regex = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
j["normalizer"] = {"type": "NFC"}
vocab = j["model"]["vocab"]
vocab["he"] = max(max(vocab.values()), max(t["id"] for t in j.get("added_tokens", []))) + 1
j["model"]["merges"] = ["h e"]
json.dump(j, open(sys.argv[2], "w"), ensure_ascii=False)
PY

# pack_format: the defaults (lowrank + sparse + dense), and 8/2-bit bands with
# small groups, act-order off and dense quantisation of near-full-rank deltas.
"$BIN" pack create --base "$T/base" --tuned "$T/tuned" --name seed-default -o "$C/pack_format/tool-default.skillpack" \
  --threads 1 --tag seed --description "fuzz seed" >/dev/null 2>&1
echo '{"bands": [[0.5, 8], [1.0, 2]], "group_size": 8, "act_order": false, "dense_rank_fraction": 0.3, "alpha": 0.2}' \
  >"$T/config.json"
"$BIN" pack create --base "$T/base" --tuned "$T/tuned" --name seed-bands -o "$C/pack_format/tool-bands.skillpack" \
  --threads 1 --config "$T/config.json" >/dev/null 2>&1

# router: trained on the base with two pack labels.
python3 - "$T/labelled.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(12):
        f.write(json.dumps({"prompt": "add %d and %d" % (i, i + 1), "label": "seed-default"}) + "\n")
        f.write(json.dumps({"prompt": "reverse word%d" % i, "label": "seed-bands"}) + "\n")
        f.write(json.dumps({"prompt": "hello there %d" % i, "label": "none"}) + "\n")
PY
"$BIN" router train --model "$T/base" --data "$T/labelled.jsonl" -o "$C/router/tool-router.safetensors" --width 8 \
  --epochs 5 --threads 1 >/dev/null
ls -l "$C"/*/tool-* | awk '{print $5, $9}'
