#!/usr/bin/env bash
# Which DPO makes held-out exact match rise? One fidelity spec (default
# bench/fidelity/dpo_variants.json: Table 1 on one task, on-policy pairs), run
# once per DPO variant: each variant's fields replace the spec's "dpo" ones
# (e.g. '{"name": "rpo1", "dpo": {"sft_weight": 1}}'). The SFT runs (full and
# LoRA), their on-policy pairs and SFT packs are made once, in WORK/sft, and
# copied into each variant's folder, so every variant starts from the same models.
#   usage: bench/dpo-variants.sh BUILD_DIR WORK_DIR VARIANT_JSON...
# SKILLPACK_FIDELITY_SPEC picks the spec. Writes bench/results/dpo-variants_<UTC
# time>_<spec name>/: per variant fidelity.json / fidelity.md / spec.json, and
# summary.json (per variant, task and regime: exact match of base, full FT, packs, LoRAs).
set -euo pipefail
BUILD_DIR=${1:?usage: bench/dpo-variants.sh BUILD_DIR WORK_DIR VARIANT_JSON...}
WORK=${2:?usage: bench/dpo-variants.sh BUILD_DIR WORK_DIR VARIANT_JSON...}
shift 2
SPEC=${SKILLPACK_FIDELITY_SPEC:-bench/fidelity/dpo_variants.json}
SPEC_NAME=$(basename "$SPEC" .json)
FIDELITY="$BUILD_DIR/bench/fidelity_bench"
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SPEC_DIR=$(cd "$(dirname "$SPEC")" && pwd)
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
OUT="bench/results/dpo-variants_${stamp}_$SPEC_NAME"
mkdir -p "$OUT"

for variant in "$@"; do
  name=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["name"])' "$variant")
  spec="$WORK/spec-$name.json"
  python3 - "$SPEC" "$SPEC_DIR" "$variant" "$spec" <<'PY'
import json, os, sys
spec = json.load(open(sys.argv[1]))
variant = json.loads(sys.argv[3])
base = spec["base_model"]
if isinstance(base, str) and not os.path.isabs(base):
    spec["base_model"] = os.path.normpath(os.path.join(sys.argv[2], base))
spec["name"] += "-" + variant["name"]
spec["dpo"].update(variant.get("dpo", {}))
json.dump(spec, open(sys.argv[4], "w"), indent=1)
PY
  dir="$WORK/$name"
  mkdir -p "$dir/runs" "$dir/packs"
  # The SFT models, their pairs and packs, from the first variant that made them.
  if [ -d "$WORK/sft" ]; then
    cp -rn "$WORK/sft/runs/." "$dir/runs/"
    cp -rn "$WORK/sft/packs/." "$dir/packs/"
  fi
  # The study's own lines (not the per-step progress) to run.log; its status through pipefail.
  { "$FIDELITY" --spec "$spec" --out "$dir" 2>&1 1>&3 | grep --line-buffered '^\[fidelity' > "$dir/run.log"; } 3>&1
  if [ ! -d "$WORK/sft" ]; then
    mkdir -p "$WORK/sft/runs" "$WORK/sft/packs"
    for run in "$dir"/runs/*; do
      case "$(basename "$run")" in *-sft | *-sft-onpolicy-pairs.jsonl) cp -r "$run" "$WORK/sft/runs/" ;; esac
    done
    for pack in "$dir"/packs/*-sft-*; do cp "$pack" "$WORK/sft/packs/"; done
  fi
  mkdir -p "$OUT/$name"
  cp "$dir"/fidelity.{json,md} "$dir/run.log" "$OUT/$name/"
  cp "$spec" "$OUT/$name/spec.json"
done

python3 - "$OUT" "$stamp" "$@" > "$OUT/summary.json" <<'PY'
import json, os, platform, sys
out, stamp = sys.argv[1:3]
summary = {"stamp": stamp, "machine": platform.processor() or platform.machine(), "variants": {}}
for variant in sys.argv[3:]:
    v = json.loads(variant)
    f = json.load(open(os.path.join(out, v["name"], "fidelity.json")))
    per_task = {}
    for task, regimes in f["table1"]["tasks"].items():
        per_task[task] = {rg: {"base": r["base"], "full_ft": r["full_ft"],
                               "packs": [p["accuracy"] for p in r["packs"]],
                               "lora": [l["accuracy"] for l in r["lora"]]} for rg, r in regimes.items()}
    summary["variants"][v["name"]] = {"dpo": v.get("dpo", {}), "table1": per_task}
print(json.dumps(summary, indent=1))
PY
echo "wrote $OUT"
