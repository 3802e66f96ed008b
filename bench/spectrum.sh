#!/usr/bin/env bash
# The spectrum of task deltas (tuned - base, per projection) on the demo's
# pretrained tiny base against a random base of the same shape and seed (the
# pretrained base's own initialisation), same task and same SFT recipe (the
# demo's job). Needs a finished `make demo` (its base, jobs and SFT runs).
#   usage: bench/spectrum.sh [BUILD_DIR] [DEMO_DIR]
# Writes bench/results/spectrum_<UTC time>.json (machine, recipe, accuracies,
# per-type means and every module's energy at rank r / rank for 90/95/99%).
set -euo pipefail
BUILD_DIR=${1:-build}
DEMO=${2:-demo-data}
BIN="$BUILD_DIR/cli/skillpack"
TRAINER="$BUILD_DIR/trainer/skillpack-trainer"
TASKS=(${SKILLPACK_DEMO_TASKS:-reverse sort})
export OMP_WAIT_POLICY=PASSIVE
DEMO=$(cd "$DEMO" && pwd)
W="$DEMO/spectrum"
mkdir -p "$W/jobs" "$W/runs"
[ -f "$DEMO/jobs/base.json" ] || { echo "no pretrained demo base in $DEMO (run make demo first)" >&2; exit 1; }
ranks="1,2,4,8,16,32,64,128,192"

# The random base: the pretrain job's tiny spec (same shape and seed), no training.
if [ ! -f "$W/random/config.json" ]; then
  read -r layers hidden heads kv seed < <(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["base_model"]["tiny"]
print(t["layers"], t["hidden"], t["heads"], t["kv_heads"], t["seed"])' "$DEMO/jobs/base.json")
  "$BIN" model init-tiny --out "$W/random" --layers "$layers" --hidden "$hidden" --heads "$heads" \
    --kv-heads "$kv" --seed "$seed"
fi

start_load=$(cut -d' ' -f1 /proc/loadavg)
for task in "${TASKS[@]}"; do
  [ -f "$DEMO/runs/$task/model/config.json" ] || { echo "no demo SFT run for $task" >&2; exit 1; }
  # The demo's SFT job on the random base (no compression).
  if [ ! -f "$W/runs/random-$task/report.json" ]; then
    python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
j["base_model"] = sys.argv[2]
j["stages"].pop("compress", None)
json.dump(j, open(sys.argv[3], "w"), indent=1)' "$DEMO/jobs/$task.json" "$W/random" "$W/jobs/random-$task.json"
    "$TRAINER" run "$W/jobs/random-$task.json" --out "$W/runs/random-$task" --no-progress
  fi
  "$BIN" pack spectrum --base "$DEMO/base" --tuned "$DEMO/runs/$task/model" --ranks "$ranks" \
    -o "$W/pretrained-$task.json"
  "$BIN" pack spectrum --base "$W/random" --tuned "$W/runs/random-$task/model" --ranks "$ranks" \
    -o "$W/random-$task.json"
done

stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mkdir -p bench/results
python3 - "$DEMO" "$W" "$stamp" "$start_load" "${TASKS[@]}" > "bench/results/spectrum_$stamp.json" <<'PY'
import json, os, platform, sys
demo, w, stamp, load = sys.argv[1:5]
tasks = sys.argv[5:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
mem = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal"))
out = {
    "benchmark": "spectrum of task deltas (tuned - base) per projection: the demo's pretrained tiny base vs a "
                 "random base of the same shape and seed, same task and SFT recipe",
    "time": stamp,
    "machine": {"cpu": cpu, "logical_cores": os.cpu_count(), "memory_bytes": mem,
                "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
                "load_average_at_start": float(load)},
    "how": "make demo; bash bench/spectrum.sh build demo-data (skillpack pack spectrum --base B --tuned T)",
    "pretrain_job": json.load(open(os.path.join(demo, "jobs/base.json"))),
    "pretrain_report": json.load(open(os.path.join(demo, "runs/base/report.json")))["stages"]["pretrain"],
    "tasks": {},
}
for t in tasks:
    entry = {"sft_job": json.load(open(os.path.join(demo, "jobs", t + ".json")))["stages"]["sft"]}
    for kind, run in (("pretrained", os.path.join(demo, "runs", t)), ("random", os.path.join(w, "runs", "random-" + t))):
        rep = json.load(open(os.path.join(run, "report.json")))
        spec = json.load(open(os.path.join(w, f"{kind}-{t}.json")))
        entry[kind] = {
            "held_out_accuracy_before": rep["eval"]["before"]["accuracy"],
            "held_out_accuracy_after_sft": rep["eval"]["after"]["accuracy"],
            "sft_seconds": rep["stages"]["sft"]["seconds"],
            "ranks": spec["ranks"], "energies": spec["energies"],
            "by_type": spec["by_type"], "modules": spec["modules"],
        }
    out["tasks"][t] = entry
print(json.dumps(out, indent=1))
PY
echo "wrote bench/results/spectrum_$stamp.json"
python3 - "bench/results/spectrum_$stamp.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for t, e in r["tasks"].items():
    for kind in ("pretrained", "random"):
        k = e[kind]
        print(f"{t} {kind}: acc {k['held_out_accuracy_before']:.2f} -> {k['held_out_accuracy_after_sft']:.2f}")
        print("  type      " + " ".join(f"E@{x:<4}" for x in k["ranks"]) + "  r90   r95   r99 (of)")
        for ty, v in k["by_type"].items():
            print(f"  {ty:9s} " + " ".join(f"{x:6.3f}" for x in v["mean_energy_at_rank"]) + "  " +
                  " ".join(f"{x:5.1f}" for x in v["mean_rank_for_energy"]) + f" ({v['full_rank']})")
PY
