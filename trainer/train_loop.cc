#include "trainer/train_loop.h"

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include <torch/optim/adamw.h>
#include <torch/serialize.h>

#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "core/file_util.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Example order: a fresh seeded Fisher-Yates shuffle of [0, n) per epoch.
class DataOrder {
 public:
  DataOrder(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}
  int64_t At(int64_t position) {
    const int64_t epoch = position / n_;
    if (epoch != epoch_) {
      epoch_ = epoch;
      perm_.resize(static_cast<size_t>(n_));
      for (int64_t i = 0; i < n_; ++i) perm_[i] = i;
      std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
      for (int64_t i = n_ - 1; i > 0; --i) {
        std::swap(perm_[i], perm_[rng() % static_cast<uint64_t>(i + 1)]);
      }
    }
    return perm_[position % n_];
  }

 private:
  int64_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

// Global L2 norm of `grads`; scales them in place to max_norm when larger (max_norm > 0).
double ClipGradNorm(std::vector<at::Tensor>& grads, double max_norm) {
  at::Tensor sq = at::zeros({}, at::kDouble);
  for (const at::Tensor& g : grads) sq += g.to(at::kDouble).pow(2).sum();
  const double norm = std::sqrt(sq.item<double>());
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (at::Tensor& g : grads) g.mul_(scale);
  }
  return norm;
}

std::string CheckpointName(int64_t step) { return absl::StrFormat("step_%09d", step); }

Status RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("removing ", path, ": ", ec.message()));
  return absl::OkStatus();
}

Status SaveCheckpoint(const LoopConfig& config, int64_t step, const TrainableWeights& weights,
                      torch::optim::Optimizer& optimizer, const std::vector<StepLog>& log) {
  const std::string& root = config.checkpoint_dir;
  RETURN_IF_ERROR(MakeDirectories(root));
  const std::string name = CheckpointName(step);
  const std::string final_dir = JoinPath(root, name);
  const std::string tmp_dir = final_dir + ".tmp";
  RETURN_IF_ERROR(RemoveTree(tmp_dir));
  RETURN_IF_ERROR(MakeDirectories(tmp_dir));
  Json state;
  state["step"] = step;
  state["names"] = Json::array();
  std::vector<at::Tensor> tensors;
  for (const auto& [pname, p] : weights.parameters()) {
    state["names"].push_back(pname);
    tensors.push_back(p.detach());
  }
  state["lora_rank"] = weights.lora().rank;
  state["log"] = Json::array();
  for (const StepLog& s : log) state["log"].push_back(StepLogToJson(s));
  try {
    torch::save(tensors, JoinPath(tmp_dir, "params.pt"));
    torch::save(optimizer, JoinPath(tmp_dir, "optimizer.pt"));
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("writing checkpoint ", tmp_dir));
  }
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(tmp_dir, "state.json"), state.dump(1)));
  RETURN_IF_ERROR(RemoveTree(final_dir));
  if (std::rename(tmp_dir.c_str(), final_dir.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("renaming ", tmp_dir, " to ", final_dir));
  }
  RETURN_IF_ERROR(SyncParentDirectory(final_dir));
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(root, "latest"), name));
  // Drop the oldest checkpoints beyond keep_checkpoints.
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    const std::string n = entry.path().filename().string();
    if (entry.is_directory() && absl::StartsWith(n, "step_") && !absl::EndsWith(n, ".tmp")) {
      names.push_back(n);
    }
  }
  std::sort(names.begin(), names.end());
  const int64_t keep = std::max<int64_t>(1, config.keep_checkpoints);
  for (int64_t i = 0; i + keep < static_cast<int64_t>(names.size()); ++i) {
    RETURN_IF_ERROR(RemoveTree(JoinPath(root, names[i])));
  }
  return absl::OkStatus();
}

// Loads the newest checkpoint of config.checkpoint_dir into the trainable
// tensors and the optimizer; returns its step, or 0 when there is none.
StatusOr<int64_t> LoadCheckpoint(const LoopConfig& config, TrainableWeights& weights,
                                 torch::optim::Optimizer& optimizer, std::vector<StepLog>* log) {
  const std::string latest = JoinPath(config.checkpoint_dir, "latest");
  if (!PathExists(latest)) return 0;
  ASSIGN_OR_RETURN(std::string name, ReadFileToString(latest));
  const std::string dir = JoinPath(config.checkpoint_dir, absl::StripAsciiWhitespace(name));
  ASSIGN_OR_RETURN(Json state, ReadJsonFile(JoinPath(dir, "state.json")));
  ASSIGN_OR_RETURN(int64_t step, GetField<int64_t>(state, "step", dir));
  ASSIGN_OR_RETURN(Json names, GetField<Json>(state, "names", dir));
  const auto& params = weights.parameters();
  if (!names.is_array() || names.size() != params.size()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": checkpoint holds ", names.size(),
                                                   " tensors, the run trains ", params.size(),
                                                   " (was it made with another model or LoRA setting?)"));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (names[i] != params[i].first) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": checkpoint tensor ", i, " is ", names[i].dump(),
                                                     ", the run expects '", params[i].first, "'"));
    }
  }
  try {
    std::vector<at::Tensor> tensors;
    torch::load(tensors, JoinPath(dir, "params.pt"));
    if (tensors.size() != params.size()) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/params.pt: wrong tensor count"));
    }
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) {
      if (!tensors[i].sizes().equals(params[i].second.sizes())) {
        return absl::InvalidArgumentError(absl::StrCat(dir, ": tensor '", params[i].first, "' has the wrong shape"));
      }
      params[i].second.copy_(tensors[i]);
    }
    torch::load(optimizer, JoinPath(dir, "optimizer.pt"));
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("reading checkpoint ", dir));
  }
  log->clear();
  if (state.contains("log") && state["log"].is_array()) {
    for (const Json& j : state["log"]) {
      StepLog s;
      s.step = j.value("step", int64_t{0});
      s.lr = j.value("lr", 0.0);
      s.grad_norm = j.value("grad_norm", 0.0);
      s.seconds = j.value("seconds", 0.0);
      if (j.contains("metrics") && j["metrics"].is_object()) {
        for (const auto& [k, v] : j["metrics"].items()) s.metrics[k] = v.get<double>();
      }
      log->push_back(std::move(s));
    }
  }
  return step;
}

}  // namespace

Status ValidateLoopConfig(const LoopConfig& c, absl::string_view what) {
  auto bad = [&](absl::string_view field, auto value, absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat(what, ".", field, " must be ", rule, ", got ", value));
  };
  if (c.steps < 1) return bad("steps", c.steps, ">= 1");
  if (c.batch_size < 1) return bad("batch_size", c.batch_size, ">= 1");
  if (c.grad_accum < 1) return bad("grad_accum", c.grad_accum, ">= 1");
  const OptimizerConfig& o = c.optim;
  if (!(o.lr > 0 && o.lr <= 1)) return bad("lr", o.lr, "in (0, 1]");
  if (!(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1)) return bad("min_lr_ratio", o.min_lr_ratio, "in [0, 1]");
  if (o.warmup_steps < 0 || o.warmup_steps > c.steps) return bad("warmup_steps", o.warmup_steps, "in [0, steps]");
  if (!(o.weight_decay >= 0 && o.weight_decay < 1)) return bad("weight_decay", o.weight_decay, "in [0, 1)");
  if (!(o.beta1 >= 0 && o.beta1 < 1)) return bad("beta1", o.beta1, "in [0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) return bad("beta2", o.beta2, "in [0, 1)");
  if (!(o.eps > 0)) return bad("eps", o.eps, "> 0");
  if (!(o.grad_clip >= 0)) return bad("grad_clip", o.grad_clip, ">= 0");
  if (c.checkpoint_every < 0) return bad("checkpoint_every", c.checkpoint_every, ">= 0");
  if (c.keep_checkpoints < 1) return bad("keep_checkpoints", c.keep_checkpoints, ">= 1");
  if (c.log_every < 1) return bad("log_every", c.log_every, ">= 1");
  if (!(c.max_epochs >= 0 && c.max_epochs <= 1e6)) return bad("max_epochs", c.max_epochs, "in [0, 1e6] (0: no cap)");
  return absl::OkStatus();
}

double ScheduledLr(const OptimizerConfig& c, int64_t step, int64_t total_steps) {
  if (step < c.warmup_steps) return c.lr * static_cast<double>(step + 1) / c.warmup_steps;
  const int64_t decay_steps = total_steps - c.warmup_steps;
  if (decay_steps <= 1) return c.lr;
  const double progress = static_cast<double>(step - c.warmup_steps) / (decay_steps - 1);
  const double cosine = 0.5 * (1 + std::cos(M_PI * std::min(1.0, progress)));
  return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * cosine);
}

ScheduledSteps ScheduleFor(const LoopConfig& c, int64_t examples, int world) {
  ScheduledSteps s{c.steps, c.optim.warmup_steps, 0};
  const double per_step = static_cast<double>(c.batch_size) * c.grad_accum * std::max(world, 1);
  if (c.max_epochs > 0 && examples > 0) {
    const double cap = std::ceil(c.max_epochs * static_cast<double>(examples) / per_step);
    if (cap < static_cast<double>(c.steps)) {
      s.steps = std::max<int64_t>(1, static_cast<int64_t>(cap));
      s.warmup_steps = c.optim.warmup_steps * s.steps / c.steps;
    }
  }
  if (examples > 0) s.epochs = static_cast<double>(s.steps) * per_step / static_cast<double>(examples);
  return s;
}

Json StepLogToJson(const StepLog& s) {
  Json j;
  j["step"] = s.step;
  j["lr"] = s.lr;
  j["grad_norm"] = s.grad_norm;
  j["seconds"] = s.seconds;
  j["metrics"] = Json::object();
  for (const auto& [k, v] : s.metrics) j["metrics"][k] = v;
  return j;
}

StatusOr<LoopResult> RunTrainingLoop(TrainableWeights& weights, TrainingObjective& objective, const LoopConfig& config,
                                     Communicator* comm, const ProgressFn& progress) {
  RETURN_IF_ERROR(ValidateLoopConfig(config, "training"));
  const int64_t n = objective.num_examples();
  if (n < 1) return absl::InvalidArgumentError("training: no examples");
  const int rank = comm ? comm->rank() : 0;
  const int world = comm ? comm->world_size() : 1;
  const Clock::time_point run_start = Clock::now();
  LoopResult result;
  try {
    // AdamW with decay on matrices only (norm gains and biases are not decayed).
    std::vector<at::Tensor> decay, no_decay, all;
    for (const auto& [name, p] : weights.parameters()) {
      (p.dim() >= 2 ? decay : no_decay).push_back(p);
      all.push_back(p);
    }
    result.schedule = ScheduleFor(config, n, world);
    const int64_t total = result.schedule.steps;
    OptimizerConfig oc = config.optim;
    oc.warmup_steps = result.schedule.warmup_steps;
    auto make_options = [&](double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(oc.lr).betas({oc.beta1, oc.beta2}).eps(oc.eps).weight_decay(wd));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    if (!decay.empty()) groups.emplace_back(decay, make_options(oc.weight_decay));
    if (!no_decay.empty()) groups.emplace_back(no_decay, make_options(0.0));
    torch::optim::AdamW optimizer(groups, torch::optim::AdamWOptions(oc.lr));

    int64_t step = 0;
    if (!config.checkpoint_dir.empty() && config.resume) {
      ASSIGN_OR_RETURN(step, LoadCheckpoint(config, weights, optimizer, &result.log));
    }
    result.resumed_from = step;
    const std::vector<std::string> metric_names = objective.MetricNames();
    DataOrder order(n, config.seed);
    const int64_t global_micro = config.batch_size * world;
    const int64_t end = config.stop_at_step >= 0 ? std::min(total, config.stop_at_step) : total;

    while (step < end) {
      if (config.cancel != nullptr && config.cancel->load()) {
        return absl::CancelledError(absl::StrCat("training cancelled after step ", step, " of ", total));
      }
      const Clock::time_point step_start = Clock::now();
      const double lr = ScheduledLr(oc, step, total);
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      // This rank's micro-batches.
      std::vector<std::vector<int64_t>> micro(static_cast<size_t>(config.grad_accum));
      double local_units = 0;
      for (int64_t m = 0; m < config.grad_accum; ++m) {
        const int64_t base = (step * config.grad_accum + m) * global_micro + rank * config.batch_size;
        for (int64_t k = 0; k < config.batch_size; ++k) micro[m].push_back(order.At(base + k));
        local_units += objective.Units(micro[m]);
      }
      std::vector<at::Tensor> units = {at::full({1}, local_units, at::kDouble)};
      if (comm) RETURN_IF_ERROR(comm->AllReduceSum(units));
      const double global_units = std::max(1.0, units[0].item<double>());

      optimizer.zero_grad();
      std::vector<double> sums(metric_names.size() + 1, 0.0);  // metrics..., tokens
      for (const std::vector<int64_t>& idx : micro) {
        ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> w, weights.ForwardWeights());
        ASSIGN_OR_RETURN(MicroBatchLoss mb, objective.Loss(*w, idx, global_units));
        mb.loss.backward();
        for (size_t i = 0; i < metric_names.size(); ++i) {
          auto it = mb.sums.find(metric_names[i]);
          if (it != mb.sums.end()) sums[i] += it->second;
        }
        sums.back() += static_cast<double>(mb.tokens);
      }
      // Sum gradients (already divided by the global unit count) and metrics.
      std::vector<at::Tensor> grads;
      for (at::Tensor& p : all) {
        if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
        grads.push_back(p.grad());
      }
      if (comm && world > 1) {
        RETURN_IF_ERROR(comm->AllReduceSum(grads));
        std::vector<at::Tensor> m = {at::tensor(sums, at::kDouble)};
        RETURN_IF_ERROR(comm->AllReduceSum(m));
        for (size_t i = 0; i < sums.size(); ++i) sums[i] = m[0][static_cast<int64_t>(i)].item<double>();
      }
      const double grad_norm = ClipGradNorm(grads, oc.grad_clip);
      optimizer.step();
      ++step;

      StepLog s;
      s.step = step;
      s.lr = lr;
      s.grad_norm = grad_norm;
      for (size_t i = 0; i < metric_names.size(); ++i) s.metrics[metric_names[i]] = sums[i] / global_units;
      s.seconds = SecondsSince(step_start);
      result.tokens += static_cast<int64_t>(sums.back());
      if (step % config.log_every == 0 || step == total || step == end) result.log.push_back(s);
      if (progress) progress(s, total);

      const bool last = step == end;
      const bool due = config.checkpoint_every > 0 && step % config.checkpoint_every == 0;
      if (!config.checkpoint_dir.empty() && (due || last)) {
        if (rank == 0) RETURN_IF_ERROR(SaveCheckpoint(config, step, weights, optimizer, result.log));
        if (comm) RETURN_IF_ERROR(comm->Barrier());
      }
    }
    result.final_step = step;
  } catch (const std::exception& e) {
    return StatusFromException(e, "training loop");
  }
  result.seconds = SecondsSince(run_start);
  return result;
}

Json LoopReport(const LoopResult& r, const LoopConfig& c, const TrainableWeights& w) {
  Json j;
  // The steps the run was scheduled for; with max_epochs also what was asked
  // for and the passes over the data.
  j["steps"] = r.schedule.steps > 0 ? r.schedule.steps : c.steps;
  if (c.max_epochs > 0) {
    j["steps_requested"] = c.steps;
    j["max_epochs"] = c.max_epochs;
    j["epochs"] = r.schedule.epochs;
  }
  j["resumed_from"] = r.resumed_from;
  j["final_step"] = r.final_step;
  j["batch_size"] = c.batch_size;
  j["grad_accum"] = c.grad_accum;
  j["lr"] = c.optim.lr;
  j["lora_rank"] = w.lora().rank;
  j["trainable_parameters"] = w.NumTrainable();
  j["seconds"] = r.seconds;
  j["tokens"] = r.tokens;
  j["tokens_per_second"] = r.tokens_per_second();
  if (!r.log.empty()) {
    j["first"] = StepLogToJson(r.log.front());
    j["last"] = StepLogToJson(r.log.back());
  }
  // At most ~100 points of the curve.
  const size_t stride = std::max<size_t>(1, r.log.size() / 100);
  j["log"] = Json::array();
  for (size_t i = 0; i < r.log.size(); i += stride) j["log"].push_back(StepLogToJson(r.log[i]));
  if (!r.log.empty() && (r.log.size() - 1) % stride != 0) j["log"].push_back(StepLogToJson(r.log.back()));
  return j;
}

}  // namespace skillpack
