#!/usr/bin/env python3
"""GPTQ vs round-to-nearest in the trainer's compress stage, on the tiny world (issue 11).

One SFT job (tiny Llama, 2 layers x 128, sort task, 400 steps), then its compress
stage rerun with the same --out (SFT resumes from its final checkpoint: no extra
steps) for each setting: calibration on the tuned model's activations over 64
training sequences, quantizer rtn or gptq, at budgets 1/4, 1/8, 1/16 of the fp16
delta (file bytes) and at the default alpha/beta. Records, per setting, the
held-out exact match of base + pack (the trainer's own eval path, 200 prompts),
the relative Frobenius and calibrated-output errors of the pack, and file bytes,
in bench/results/gptq_vs_rtn_<UTC time>.json with the machine.

usage: scripts/gptq-vs-rtn.py [BUILD_DIR] [WORK_DIR]   (about 10-20 min on 2 cores)
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

build = sys.argv[1] if len(sys.argv) > 1 else "build"
work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="gptq_vs_rtn_")
trainer = os.path.join(build, "trainer", "skillpack-trainer")
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

job = {
    "name": "sort-calib",
    "seed": 2,
    "threads": 2,
    "base_model": {"tiny": {"layers": 2, "hidden": 128, "heads": 4, "kv_heads": 2, "seed": 1}},
    "task": {"name": "sort", "held_out": 200, "train_examples": 20000},
    "stages": {
        "sft": {"steps": 400, "batch_size": 32, "lr": 3e-3, "warmup_steps": 30, "max_seq_len": 32},
    },
}
settings = [("default", None)] + [(f"1/{d}", 1.0 / d) for d in (4, 8, 16)]
out = os.path.join(work, "job")
runs = []
for label, ratio in settings:
    for quantizer in ("rtn", "gptq"):
        cfg = {"quantizer": quantizer}
        if ratio is not None:
            cfg["target_ratio"] = ratio
        job["stages"]["compress"] = {"name": "sort-pack", "config": cfg,
                                     "calibration": {"samples": 64, "model": "tuned"}}
        path = os.path.join(work, "job.json")
        with open(path, "w") as f:
            json.dump(job, f)
        subprocess.run([trainer, "run", path, "--out", out, "--no-progress"], check=True,
                       env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
        with open(os.path.join(out, "report.json")) as f:
            r = json.load(f)
        c = r["stages"]["compress"]
        run = {
            "setting": label, "target_ratio": ratio, "quantizer": quantizer,
            "exact_match": r["eval"]["base_plus_pack"]["accuracy"],
            "relative_error": c.get("relative_error"),
            "relative_output_error": c.get("relative_output_error"),
            "file_bytes": c["file_bytes"], "file_ratio": c["file_ratio"],
            "fp16_delta_bytes": c["fp16_delta_bytes"], "modules": c["modules"],
            "calibration": c["calibration"],
            "sft_resumed_from": r["stages"]["sft"].get("resumed_from"),
            "tuned_exact_match": r["eval"]["after"]["accuracy"],
            "base_exact_match": r["eval"]["before"]["accuracy"],
        }
        print(json.dumps(run), flush=True)
        runs.append(run)


def cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


mem = 0
try:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) * 1024
except OSError:
    pass
commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
result = {
    "benchmark": "GPTQ vs RTN in the trainer's compress stage (tiny world, sort task)",
    "machine": {"cpu": cpu(), "gpu": "none", "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
                "logical_cores": os.cpu_count(), "memory_bytes": mem},
    "how": f"scripts/gptq-vs-rtn.py at {commit}; job: " + json.dumps({k: v for k, v in job.items() if k != "stages"})
           + " sft " + json.dumps(job["stages"]["sft"]),
    "runs": runs,
}
os.makedirs(os.path.join(repo, "bench", "results"), exist_ok=True)
dst = os.path.join(repo, "bench", "results", f"gptq_vs_rtn_{now}.json")
with open(dst, "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
    f.write("\n")
print("wrote", dst)
