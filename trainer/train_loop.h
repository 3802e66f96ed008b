// The optimisation loop shared by SFT and DPO: deterministic data order,
// gradient accumulation, data-parallel gradient reduction, global-norm
// clipping, AdamW with a cosine schedule after linear warmup, logging, and
// checkpoints (trainable tensors + optimizer state + step) that resume exactly
// where a run stopped.
//
// Loss normalisation: every step's loss is (sum of per-unit losses over the
// whole global batch) / (number of units in it), where a unit is what the
// objective averages over (response tokens for SFT, pairs for DPO). Each
// micro-batch's loss is divided by the step's global unit count (summed over
// micro-batches and ranks before any forward) and gradients are summed across
// ranks, so accumulation and data parallelism give the same update as one
// process running the whole global batch at once.
#ifndef SKILLPACK_TRAINER_TRAIN_LOOP_H_
#define SKILLPACK_TRAINER_TRAIN_LOOP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/json_util.h"
#include "core/status.h"
#include "core/weights.h"
#include "trainer/distributed.h"
#include "trainer/trainable.h"

namespace skillpack {

struct OptimizerConfig {
  double lr = 1e-3;           // peak learning rate
  double min_lr_ratio = 0.1;  // cosine decays to lr * min_lr_ratio at the last step
  int64_t warmup_steps = 0;   // linear warmup from lr / warmup_steps
  double weight_decay = 0.0;  // AdamW (decoupled); applied to tensors of rank >= 2 only
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double grad_clip = 1.0;  // max global gradient L2 norm; 0 = no clipping
};

struct LoopConfig {
  int64_t steps = 100;  // optimizer steps in the whole run (before max_epochs)
  // > 0: at most this many passes over the examples, i.e. the run takes
  // ScheduleFor()'s steps: min(steps, ceil(max_epochs · examples / global
  // batch)), with the warmup shortened in the same proportion, so that the
  // schedule keeps its shape. A few hundred preference pairs under a fixed
  // step count are otherwise seen dozens of times (bench/README.md). 0: no cap.
  double max_epochs = 0;
  int64_t batch_size = 32;  // examples per micro-batch on each rank
  int64_t grad_accum = 1;   // micro-batches per optimizer step
  OptimizerConfig optim;
  uint64_t seed = 0;             // data order (a fresh shuffle every epoch)
  std::string checkpoint_dir;    // empty: no checkpoints
  int64_t checkpoint_every = 0;  // steps between checkpoints; 0: only the final one
  int64_t keep_checkpoints = 2;  // newest ones kept
  bool resume = true;            // continue from checkpoint_dir's newest checkpoint
  int64_t stop_at_step = -1;     // >= 0: checkpoint and return once this step is done
  int64_t log_every = 1;         // steps between entries of LoopResult::log
  // Checked before every step: once set, the loop returns CANCELLED (no
  // checkpoint written). One process only (ranks would disagree).
  const std::atomic<bool>* cancel = nullptr;
};

// INVALID_ARGUMENT naming the field (prefixed by `what`) when out of range.
Status ValidateLoopConfig(const LoopConfig& c, absl::string_view what);

// Learning rate of 0-based `step` of `total_steps`.
double ScheduledLr(const OptimizerConfig& c, int64_t step, int64_t total_steps);

// The steps a run of `c` over `examples` examples on `world` ranks takes
// (c.steps unless max_epochs caps it; at least 1), and its warmup then.
struct ScheduledSteps {
  int64_t steps = 0;
  int64_t warmup_steps = 0;
  double epochs = 0;  // passes over the examples those steps make
};
ScheduledSteps ScheduleFor(const LoopConfig& c, int64_t examples, int world);

struct MicroBatchLoss {
  at::Tensor loss;                     // scalar: sum of unit losses / the step's normaliser
  std::map<std::string, double> sums;  // metric sums over the micro-batch's units
  int64_t tokens = 0;                  // real (non-pad) tokens processed
};

// What a stage optimises. Implementations hold their tokenized data.
class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;
  virtual int64_t num_examples() const = 0;
  // Metric names Loss() reports sums of; the loop logs sums / units. Same on every rank.
  virtual std::vector<std::string> MetricNames() const = 0;
  // Units (the loss's averaging count) of these examples.
  virtual double Units(const std::vector<int64_t>& examples) const = 0;
  virtual StatusOr<MicroBatchLoss> Loss(const ModelWeights& weights, const std::vector<int64_t>& examples,
                                        double normaliser) = 0;
};

struct StepLog {
  int64_t step = 0;  // 1-based: optimizer steps completed
  double lr = 0;
  double grad_norm = 0;                   // before clipping
  std::map<std::string, double> metrics;  // per-unit means over the global batch
  double seconds = 0;                     // wall time of this step
};
Json StepLogToJson(const StepLog& s);

struct LoopResult {
  std::vector<StepLog> log;  // every log_every-th step and the last (resumed runs include earlier entries)
  int64_t resumed_from = 0;  // step the run started at (0: fresh)
  int64_t final_step = 0;
  ScheduledSteps schedule;  // the steps the run was scheduled for (ScheduleFor)
  double seconds = 0;       // this run's wall time
  int64_t tokens = 0;       // tokens processed by all ranks in this run
  double tokens_per_second() const { return seconds > 0 ? tokens / seconds : 0; }
};

using ProgressFn = std::function<void(const StepLog& step, int64_t total_steps)>;

// A loop's summary for reports: settings, first/last metrics, throughput and
// at most ~100 points of the curve (always the last).
Json LoopReport(const LoopResult& r, const LoopConfig& c, const TrainableWeights& w);

// Runs the loop on `weights`' trainable tensors. `comm` may be null (one
// process). Checkpoints are written by rank 0 only and read by every rank.
StatusOr<LoopResult> RunTrainingLoop(TrainableWeights& weights, TrainingObjective& objective, const LoopConfig& config,
                                     Communicator* comm, const ProgressFn& progress = nullptr);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_TRAIN_LOOP_H_
