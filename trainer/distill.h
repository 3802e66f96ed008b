// The job pipeline's distill stage: distillation data from source models.
//
// For every prompt (drawn from a task's train split, or read from a prompts
// JSONL) every source (any server speaking skillpack.v1.Inference, addressed
// by host:port) is asked for `samples` completions through Generate: plain
// text in, text out, so sources may have any shape and tokenizer. Sample k
// uses temperatures[k % size] and its own seed. Each sample is scored by the
// task's exact verifier (1 pass, 0 fail) or by a skillpack.v1.Reward service.
// Per prompt, over all sources' samples:
//   SFT set   : the best sample, when its score is > 0 (the verifier: it passes)
//   DPO pairs : (best, worst) when best's score is higher than worst's
// Ties go to the earliest sample (sources in order, then samples in order).
// Written to OUT/distill/{sft.jsonl, pairs.jsonl, samples.jsonl}; the job's
// sft / dpo stages that name no data train on them.
//
//   "distill": {"sources": ["127.0.0.1:50051", {"address": "h:p", "packs": ["x"]}],
//               "samples": 4, "task": "reverse", "prompts": 256,
//               "prompts_file": "prompts.jsonl", "temperature": 0.8 | [0, 0.8, 1.0],
//               "top_p": 1.0, "max_new_tokens": 0, "reward": "127.0.0.1:50070",
//               "concurrency": 8, "timeout_seconds": 60}
#ifndef SKILLPACK_TRAINER_DISTILL_H_
#define SKILLPACK_TRAINER_DISTILL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/json_util.h"
#include "core/status.h"
#include "trainer/data.h"
#include "trainer/tasks/task.h"

namespace skillpack {

struct DistillSource {
  std::string address;             // host:port of an Inference server
  std::vector<std::string> packs;  // requested explicitly (EXPLICIT mode); empty: the server's AUTO
};

struct DistillStageSpec {
  std::vector<DistillSource> sources;        // at least one
  int64_t samples = 4;                       // per source and prompt, in [1, 64]
  std::string task;                          // prompts + verifier; defaults to the job's task
  int64_t prompts = 256;                     // drawn from the task's train split / first N of prompts_file
  std::string prompts_file;                  // JSONL of {"prompt": s}; absolute after parsing
  std::vector<double> temperatures = {0.8};  // each in [0, 10]
  double top_p = 1.0;                        // in (0, 1]
  int32_t max_new_tokens = 0;                // 0: the task's longest response + 8 (64 without a task)
  std::string reward;                        // host:port of a Reward service; empty: the task's verifier
  int32_t concurrency = 8;                   // requests in flight, in [1, 256]
  double timeout_seconds = 60;               // per request
};

// Parses the stage's JSON object (`path` names it in errors, e.g.
// "job.stages.distill"). `base_dir` resolves prompts_file; `job_task` is the
// default task. INVALID_ARGUMENT naming the field for anything wrong: no
// sources, a bad address, an unknown task, no scorer (neither a task nor a
// reward service), an out-of-range number, a missing file.
StatusOr<DistillStageSpec> ParseDistillStage(const Json& j, const std::string& path, const std::string& base_dir,
                                             const std::string& job_task);

struct DistillResult {
  std::vector<SftRecord> sft;           // best passing sample per prompt
  std::vector<PreferenceRecord> pairs;  // best vs worst
  std::string sft_path, pairs_path;     // where they were written
  Json report;                          // counts, per-source pass rates, timings
};

struct DistillControl {
  const std::atomic<bool>* cancel = nullptr;  // set: stop (CANCELLED) before the next request
  // Called (from any worker thread, serialised) after each finished request.
  std::function<void(int64_t done, int64_t total)> progress;
};

// Runs the stage, writing OUT/distill/. `seed` makes the prompts and the
// per-sample seeds. UNAVAILABLE / DEADLINE_EXCEEDED / ... from a source or the
// reward service are returned naming it; CANCELLED when control.cancel is set.
StatusOr<DistillResult> RunDistillStage(const DistillStageSpec& spec, uint64_t seed, const std::string& out_dir,
                                        const DistillControl& control = {});

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_DISTILL_H_
