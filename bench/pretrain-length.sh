#!/usr/bin/env bash
# Does a longer-pretrained base make the tiny world's task deltas compress
# better? The base recipe of `make demo` (scripts/tiny-base-job.sh) at its 250
# steps and at 2000 (8x the tokens); on each base, bench/fidelity/pretrained.json
# (reverse and sort: full fine-tuning, packs at 1/4, 1/16 and 1/32 of the fp16
# delta, LoRA at equal bytes) and the spectrum of each full fine-tune's delta.
#   usage: bench/pretrain-length.sh [BUILD_DIR] [WORK_DIR]     (from the repository root)
# SKILLPACK_PRETRAIN_STEPS="250 2000" picks the lengths, SKILLPACK_FIDELITY_SPEC
# another spec (e.g. bench/fidelity/pretrained_whiten.json). Bases and runs are
# kept in WORK_DIR (default bench-data/pretrain-length): a rerun reuses them.
# Writes bench/results/pretrain-length_<UTC time>_<spec name>/: per length the pretrain
# report, fidelity.json / fidelity.md / plots and the spectra, and summary.json.
set -euo pipefail
BUILD_DIR=${1:-build}
WORK=${2:-bench-data/pretrain-length}
STEPS=(${SKILLPACK_PRETRAIN_STEPS:-250 2000})
SPEC=${SKILLPACK_FIDELITY_SPEC:-bench/fidelity/pretrained.json}
SPEC_NAME=$(basename "$SPEC" .json)
BIN="$BUILD_DIR/cli/skillpack"
TRAINER="$BUILD_DIR/trainer/skillpack-trainer"
FIDELITY="$BUILD_DIR/bench/fidelity_bench"
HERE=$(cd "$(dirname "$0")" && pwd)
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
OUT="bench/results/pretrain-length_${stamp}_$SPEC_NAME"
mkdir -p "$OUT"
start_load=$(cut -d' ' -f1 /proc/loadavg)

for steps in "${STEPS[@]}"; do
  base="$WORK/base-$steps"
  if [ ! -f "$base/model/config.json" ]; then
    bash "$HERE/../scripts/tiny-base-job.sh" "$steps" 2 > "$WORK/base-$steps.json"
    "$TRAINER" run "$WORK/base-$steps.json" --out "$base" --no-progress
  fi
  spec="$WORK/spec-$SPEC_NAME-$steps.json"
  fid="$WORK/fidelity-$SPEC_NAME-$steps"
  python3 - "$SPEC" "$base/model" "$steps" "$spec" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["base_model"] = sys.argv[2]
spec["name"] += "-pretrained-%s-steps" % sys.argv[3]
json.dump(spec, open(sys.argv[4], "w"), indent=1)
PY
  "$FIDELITY" --spec "$spec" --out "$fid" --no-progress
  mkdir -p "$OUT/$steps"
  for task in $(python3 -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["tasks"]))' "$spec"); do
    "$BIN" pack spectrum --base "$base/model" --tuned "$fid/runs/$task-ft-sft/model" \
      --ranks 1,2,4,8,16,32,64,128,192 -o "$OUT/$steps/spectrum-$task.json"
  done
  cp "$base/report.json" "$OUT/$steps/pretrain-report.json"
  cp "$WORK/base-$steps.json" "$OUT/$steps/pretrain-job.json" 2>/dev/null || true
  cp "$fid"/fidelity.{json,md} "$fid"/*.svg "$OUT/$steps/"
done

python3 - "$OUT" "$stamp" "$start_load" "$SPEC" "${STEPS[@]}" > "$OUT/summary.json" <<'PY'
import json, os, platform, sys
out, stamp, load, spec_path = sys.argv[1:5]
steps = sys.argv[5:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
summary = {
    "benchmark": "pretraining length vs compressibility of task deltas: the make-demo base recipe at each length, "
                 "then the fidelity spec (Table 1) and the spectrum of each full fine-tune's delta",
    "time": stamp,
    "machine": {"cpu": cpu, "logical_cores": os.cpu_count(), "kernel": " ".join(platform.uname()[2:5]),
                "load_average_at_start": float(load)},
    "how": "SKILLPACK_FIDELITY_SPEC=%s bash bench/pretrain-length.sh build" % spec_path,
    "fidelity_spec": spec_path,
    "lengths": {},
}
for s in steps:
    d = os.path.join(out, s)
    pre = json.load(open(os.path.join(d, "pretrain-report.json")))["stages"]["pretrain"]
    fid = json.load(open(os.path.join(d, "fidelity.json")))
    entry = {"pretrain_steps": int(s), "held_out_text": pre.get("held_out_after"), "tasks": {}}
    for task, t in fid["table1"]["tasks"].items():
        sft = t["sft"]
        spec = json.load(open(os.path.join(d, "spectrum-%s.json" % task)))
        rel = {}
        for m in spec["modules"]:
            rel.setdefault(m["type"], []).append(m["relative_delta"])
        entry["tasks"][task] = {
            "base": sft["base"], "full_ft": sft["full_ft"],
            "packs": {str(p["ratio"]): {"accuracy": p["accuracy"], "gain_kept": p["gain_kept"],
                                        "relative_error": p["relative_error"], "file_ratio": p["file_ratio"]}
                      for p in sft["packs"]},
            "lora": {str(l["ratio"]): {"accuracy": l["accuracy"], "gain_kept": l["gain_kept"], "rank": l["rank"]}
                     for l in sft["lora"]},
            # Per projection type, means over the layers: |dW| / |W|, and the rank keeping 90% of dW's energy.
            "delta": {ty: {"relative_norm": sum(rel[ty]) / len(rel[ty]), "rank_90": v["mean_rank_for_energy"][0],
                           "full_rank": v["full_rank"]}
                      for ty, v in sorted(spec["by_type"].items())},
        }
    summary["lengths"][s] = entry
print(json.dumps(summary, indent=1))
PY
echo "wrote $OUT"
