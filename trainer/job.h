// Training jobs: a JSON spec of a base model, an optional synthetic task (its
// train split feeds stages that name no data file; its held-out split is
// evaluated before and after) and optional stages, run in the fixed order
// pretrain -> distill -> sft -> dpo -> compress -> router -> publish. RunJob writes
// the trained model folder (DIR/model) and DIR/report.json (losses, timings,
// held-out accuracy before/after, held-out text perplexity before/after pretrain).
//
//   {
//     "name": "sft-tiny", "seed": 1, "threads": 2,
//     "base_model": "path/to/model"  |  {"tiny": {"layers": 2, "hidden": 128, "heads": 4,
//                                                  "kv_heads": 2, "intermediate": 0, "seed": 1}},
//     "task": {"name": "reverse", "held_out": 200, "train_examples": 20000},
//     "stages": {
//       "sft": {"data": "train.jsonl", "steps": 600, "batch_size": 32, "grad_accum": 1,
//               "lr": 2e-3, "min_lr_ratio": 0.1, "warmup_steps": 30, "weight_decay": 0.0,
//               "grad_clip": 1.0, "max_seq_len": 64, "checkpoint_every": 0, "max_epochs": 0,
//               "lora": {"rank": 8, "alpha": 16}},
//       "dpo": {"data": "pairs.jsonl", "beta": 0.1, "length_normalize": false,
//               "eval_pairs": 128, ...the training fields of sft...},
//       "compress": {"name": "reverse-pack", "config": {...CompressionConfig...},
//                    "description": "...", "tags": ["..."]},
//       "distill": {...see distill.h...},   "publish": {...see publish.h...},
//       "router": {...see router_stage.h: a router trained on the base model...}
//     }
//   }
// The pretrain stage trains every weight on next-token prediction over the
// corpus (text files / folders, see trainer/pretrain.h) cut into windows of
// max_seq_len tokens, plus the mixture's task examples (train split); the
// stages after it start from the pretrained weights, and DIR/model is a base
// for other jobs.
// When a distill stage runs, the sft / dpo stages that name no data train on
// its SFT set / DPO pairs (instead of the task's generated examples).
// LoRA: "lora": {"rank": 8, "alpha": 16} trains a fresh adapter over the model
// the stage starts from; "lora": {"init": "DIR/adapter"} continues an adapter
// a LoRA stage wrote (rank and alpha are the adapter's), which must have been
// trained over that same model (its base fingerprint): e.g. a DPO job over the
// SFT job's base that continues the SFT adapter, so that SFT -> DPO stores one
// adapter. A DPO stage's reference is the policy it starts from (the model so
// far, plus the adapter it continues). When the job's last training stage
// trained LoRA, DIR/adapter holds that adapter in Hugging Face PEFT's layout
// (trainer/lora_adapter.h), over the model that stage started from.
// Relative paths are resolved against the job file's folder. Every field is
// checked before anything runs: an unknown field or stage, a missing file or an
// out-of-range value is INVALID_ARGUMENT naming the field ("stages.sft.lr ...").
#ifndef SKILLPACK_TRAINER_JOB_H_
#define SKILLPACK_TRAINER_JOB_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/status.h"
#include "core/tiny_model.h"
#include "trainer/distill.h"
#include "trainer/distributed.h"
#include "trainer/dpo.h"
#include "trainer/publish.h"
#include "trainer/router_stage.h"
#include "trainer/train_loop.h"
#include "trainer/trainable.h"

namespace skillpack {

// Names of the stages a job may hold, in the order they run.
const std::vector<std::string>& JobStageNames();

struct TrainStageSpec {
  std::string data;  // JSONL path (absolute after parsing); empty: the task's train split
  LoopConfig loop;   // checkpoint_dir is set by RunJob
  LoraConfig lora;
  int64_t max_seq_len = 128;  // tokens per sequence (prompt + response + end)
};

// Next-token pretraining on a text corpus (trainer/pretrain.h).
struct PretrainStageSpec {
  TrainStageSpec train;             // train.data is unused; train.lora is never set
  std::vector<std::string> corpus;  // files or folders (absolute after parsing)
  double held_out_fraction = 0.02;  // of the text windows, scored before / after
  std::vector<std::string> mixture_tasks;
  double mixture_fraction = 0.05;  // of the training sequences (0 without mixture tasks)
};

struct DpoStageSpec {
  TrainStageSpec train;
  DpoConfig dpo;
  int64_t eval_pairs = 128;  // held-out task pairs scored before / after (0: none)
};

// Compression of the job's delta (tuned - base) into DIR/<name>.skillpack.
struct CompressStageSpec {
  std::string pack_name;         // ValidatePackName rules; default: the job name
  Json config = Json::object();  // a pack/compressor.h CompressionConfig as JSON
  std::string description;
  std::vector<std::string> tags;
  // Calibration ("calibration": {"samples", "max_len", "model"}): the input
  // Hessians for GPTQ and budget mode's error weights, captured on the first
  // `calib_samples` training sequences (prompt + response) run through the
  // tuned model (as GraftLLM's reference does) or the base. 0: none
  // (round-to-nearest).
  int64_t calib_samples = 64;
  int64_t calib_max_len = 0;  // 0: the sft stage's max_seq_len (128 without one)
  bool calib_on_tuned = true;
  // "refit": {the sft stage's loop fields, "data", "max_seq_len"}: after
  // compressing, train the pack's stored numbers by distillation from the
  // tuned model (trainer/pack_refit.h) on the sft stage's data (or "data"),
  // keeping the operators, ranks, bits and sparsity the compressor chose (so
  // a budget still holds). lora is refused; max_seq_len defaults to the sft
  // stage's; steps / lr / warmup_steps to 300 / 3e-3 / 20 (the measured ones).
  std::optional<TrainStageSpec> refit;
  // "refit": {"skip_below_kl": x}: no refit for a pack whose validation KL from
  // the tuned model is already at most x nats per response token. Default
  // 0.02: in every committed fidelity result a refit that helped started at
  // ≥ 0.18 and one that did not at ≤ 0.006 (1/4 packs; bench/README.md).
  double refit_skip_below_kl = 0.02;
};

struct JobSpec {
  std::string name = "job";
  uint64_t seed = 0;
  int threads = 0;                            // 0: leave libtorch's default
  std::string base_model_dir;                 // set unless tiny_base
  std::optional<TinyModelOptions> tiny_base;  // made in DIR/base
  std::string task;                           // empty: none
  int64_t held_out = 200;                     // task examples evaluated
  int64_t train_examples = 20000;             // task examples generated for training
  std::optional<PretrainStageSpec> pretrain;
  std::optional<DistillStageSpec> distill;
  std::optional<TrainStageSpec> sft;
  std::optional<DpoStageSpec> dpo;
  std::optional<CompressStageSpec> compress;
  std::optional<RouterStageSpec> router;
  std::optional<PublishStageSpec> publish;
};

// Parses and validates a job. `base_dir` resolves relative paths.
StatusOr<JobSpec> ParseJobSpec(const Json& job, const std::string& base_dir);
// A job's `base_model` field alone (a folder, relative to `base_dir`, or {"tiny": {...}})
// into job->base_model_dir / job->tiny_base; errors name "job.base_model".
Status ParseJobBaseModel(const Json& base_model, const std::string& base_dir, JobSpec* job);
StatusOr<JobSpec> LoadJobSpec(const std::string& path);

// A job's progress, as reported to RunJobOptions::on_progress.
struct JobProgressUpdate {
  // "setup", "eval", "pretrain", "distill", "sft", "dpo", "export", "compress", "refit" (inside compress), "router",
  // "publish".
  std::string stage;
  int64_t step = 0;         // steps done (distill: requests answered)
  int64_t total_steps = 0;  // 0: the stage has no steps
  double loss = 0;          // sft / dpo: the last step's loss
  double eta_seconds = 0;   // of the stage, from its rate so far; 0: unknown
};
using JobProgressFn = std::function<void(const JobProgressUpdate&)>;

struct RunJobOptions {
  std::string out_dir;
  DistributedConfig dist;  // world_size 1: one process
  bool progress = true;    // a progress bar on stderr (rank 0)
  bool resume = true;      // continue stages from DIR/checkpoints
  // Cancellation (one process only): once set, the job stops before its next
  // training step / distill request / stage and RunJob returns CANCELLED. A
  // pack written by a compress stage that finished after the flag was set is
  // removed, so a cancelled job leaves no .skillpack.
  const std::atomic<bool>* cancel = nullptr;
  JobProgressFn on_progress;  // called on the job's thread
};

// Runs the job; returns the report (also written to out_dir/report.json by rank 0).
StatusOr<Json> RunJob(const JobSpec& job, const RunJobOptions& options);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_JOB_H_
