#include "trainer/job.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/generator.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "pack/calibration.h"
#include "pack/fingerprint.h"
#include "trainer/compress_stage.h"
#include "trainer/data.h"
#include "trainer/evaluate.h"
#include "trainer/lora_adapter.h"
#include "trainer/pack_refit.h"
#include "trainer/pretrain.h"
#include "trainer/sft.h"
#include "trainer/spec_reader.h"
#include "trainer/tasks/task.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;
double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string ResolvePath(const std::string& base_dir, const std::string& p) { return ResolveSpecPath(base_dir, p); }

Status ParseTrainStage(FieldReader& r, const std::string& base_dir, TrainStageSpec* spec, const std::string& path) {
  if (r.Has("data")) {
    RETURN_IF_ERROR(r.Read("data", &spec->data));
    spec->data = ResolvePath(base_dir, spec->data);
    if (!PathExists(spec->data)) {
      return absl::InvalidArgumentError(absl::StrCat(r.Path("data"), ": file not found: ", spec->data));
    }
  }
  LoopConfig& l = spec->loop;
  RETURN_IF_ERROR(r.Read("steps", &l.steps));
  RETURN_IF_ERROR(r.Read("batch_size", &l.batch_size));
  RETURN_IF_ERROR(r.Read("grad_accum", &l.grad_accum));
  RETURN_IF_ERROR(r.Read("lr", &l.optim.lr));
  RETURN_IF_ERROR(r.Read("min_lr_ratio", &l.optim.min_lr_ratio));
  RETURN_IF_ERROR(r.Read("warmup_steps", &l.optim.warmup_steps));
  RETURN_IF_ERROR(r.Read("weight_decay", &l.optim.weight_decay));
  RETURN_IF_ERROR(r.Read("beta1", &l.optim.beta1));
  RETURN_IF_ERROR(r.Read("beta2", &l.optim.beta2));
  RETURN_IF_ERROR(r.Read("eps", &l.optim.eps));
  RETURN_IF_ERROR(r.Read("grad_clip", &l.optim.grad_clip));
  RETURN_IF_ERROR(r.Read("checkpoint_every", &l.checkpoint_every));
  RETURN_IF_ERROR(r.Read("log_every", &l.log_every));
  RETURN_IF_ERROR(r.Read("max_epochs", &l.max_epochs));
  RETURN_IF_ERROR(ValidateLoopConfig(l, path));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("max_seq_len", &spec->max_seq_len, 4, 1 << 16));
  if (r.Has("lora")) {
    FieldReader lr(r.Get("lora"), r.Path("lora"));
    RETURN_IF_ERROR(lr.CheckObject());
    LoraConfig& lora = spec->lora;
    if (lr.Has("init")) {
      // Rank and alpha come from the adapter; given beside it they must agree.
      RETURN_IF_ERROR(lr.Read("init", &lora.init));
      lora.init = ResolvePath(base_dir, lora.init);
      StatusOr<LoraConfig> adapter = ReadLoraAdapterConfig(lora.init);
      if (!adapter.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(lr.Path("init"), ": ", adapter.status().message()));
      }
      lora.rank = adapter->rank;
      lora.alpha = adapter->alpha;
    }
    const LoraConfig from_adapter = lora;
    RETURN_IF_ERROR(lr.ReadInRange<int64_t>("rank", &lora.rank, 1, 4096));
    RETURN_IF_ERROR(lr.ReadInRange<double>("alpha", &lora.alpha, 1e-6, 1e6));
    RETURN_IF_ERROR(lr.Finish());
    if (!lora.init.empty() && (lora.rank != from_adapter.rank || lora.alpha != from_adapter.alpha)) {
      return absl::InvalidArgumentError(absl::StrCat(r.Path("lora"), ": rank ", lora.rank, " / alpha ", lora.alpha,
                                                     " differ from the adapter's r ", from_adapter.rank,
                                                     " / lora_alpha ", from_adapter.alpha, " in ", lora.init,
                                                     " (leave them out to continue it)"));
    }
  }
  return absl::OkStatus();
}

Status ParsePretrainStage(const Json& j, const std::string& base_dir, const std::string& path,
                          PretrainStageSpec* spec) {
  FieldReader r(j, path);
  RETURN_IF_ERROR(r.CheckObject());
  for (const char* key : {"data", "lora"}) {
    if (r.Has(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(r.Path(key), ": not a pretrain field (pretraining reads \"corpus\" and trains every weight)"));
    }
  }
  if (!r.Has("corpus")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".corpus: missing (a list of text files or folders)"));
  }
  ASSIGN_OR_RETURN(spec->corpus, ReadPathList(r.Get("corpus"), r.Path("corpus"), base_dir));
  RETURN_IF_ERROR(r.ReadInRange<double>("held_out_fraction", &spec->held_out_fraction, 0.0, 0.5));
  if (r.Has("mixture")) {
    FieldReader m(r.Get("mixture"), r.Path("mixture"));
    RETURN_IF_ERROR(m.CheckObject());
    if (m.Has("tasks")) {
      const Json& tasks = m.Get("tasks");
      if (!tasks.is_array()) return absl::InvalidArgumentError(absl::StrCat(m.Path("tasks"), " must be a list"));
      for (size_t i = 0; i < tasks.size(); ++i) {
        const std::string field = absl::StrCat(m.Path("tasks"), "[", i, "]");
        if (!tasks[i].is_string()) return absl::InvalidArgumentError(absl::StrCat(field, " must be a task name"));
        StatusOr<std::unique_ptr<Task>> t = MakeTask(tasks[i].get<std::string>());
        if (!t.ok()) return Annotate(t.status(), field);
        spec->mixture_tasks.push_back(tasks[i].get<std::string>());
      }
    }
    RETURN_IF_ERROR(m.ReadInRange<double>("fraction", &spec->mixture_fraction, 0.0, 0.9));
    RETURN_IF_ERROR(m.Finish());
    if (spec->mixture_fraction > 0 && spec->mixture_tasks.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(m.Path("tasks"), ": required (non-empty) when the mixture's fraction is > 0"));
    }
  }
  if (spec->mixture_tasks.empty()) spec->mixture_fraction = 0;
  RETURN_IF_ERROR(ParseTrainStage(r, base_dir, &spec->train, path));
  return r.Finish();
}

Status ParseTinyBase(const Json& j, const std::string& path, TinyModelOptions* o) {
  FieldReader r(j, path);
  RETURN_IF_ERROR(r.CheckObject());
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("layers", &o->layers, 1, 64));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("hidden", &o->hidden, 8, 8192));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("heads", &o->heads, 1, 256));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("kv_heads", &o->kv_heads, 1, 256));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("intermediate", &o->intermediate, 0, 65536));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("max_positions", &o->max_positions, 8, 1 << 20));
  RETURN_IF_ERROR(r.Read("seed", &o->seed));
  RETURN_IF_ERROR(r.Read("tie_embeddings", &o->tie_embeddings));
  RETURN_IF_ERROR(r.Finish());
  if (o->hidden % o->heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".hidden (", o->hidden, ") must be a multiple of ", path, ".heads (", o->heads, ")"));
  }
  if (o->heads % o->kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".heads (", o->heads, ") must be a multiple of ", path, ".kv_heads (", o->kv_heads, ")"));
  }
  if ((o->hidden / o->heads) % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": hidden / heads must be even (RoPE)"));
  }
  return TinyModelConfig(*o).status();
}

// Progress bar on stderr: one line, rewritten at most 10 times a second.
class ProgressBar {
 public:
  ProgressBar(std::string stage, bool enabled) : stage_(std::move(stage)), enabled_(enabled) {}
  ~ProgressBar() { Done(); }
  void Update(const StepLog& s, int64_t total) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (s.step != total && std::chrono::duration<double>(now - last_).count() < 0.1) return;
    last_ = now;
    const double elapsed = SecondsSince(start_);
    const int64_t done = s.step - (first_step_ < 0 ? (first_step_ = s.step - 1) : first_step_);
    const double eta = done > 0 ? elapsed / done * (total - s.step) : 0;
    const int width = 24;
    const int filled = static_cast<int>(width * s.step / std::max<int64_t>(1, total));
    std::string bar = std::string(filled, '=') + std::string(width - filled, ' ');
    auto it = s.metrics.find("loss");
    std::fprintf(stderr, "\r[%s] %6lld/%lld [%s] loss %.4f lr %.2e %5.1fs ETA %4.0fs ", stage_.c_str(),
                 static_cast<long long>(s.step), static_cast<long long>(total), bar.c_str(),
                 it == s.metrics.end() ? 0.0 : it->second, s.lr, elapsed, eta);
    std::fflush(stderr);
    printed_ = true;
  }
  void Done() {
    if (printed_) std::fprintf(stderr, "\n");
    printed_ = false;
  }

 private:
  std::string stage_;
  bool enabled_;
  bool printed_ = false;
  int64_t first_step_ = -1;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_{};
};

void Log(bool enabled, const std::string& line) {
  if (enabled) std::fprintf(stderr, "%s\n", line.c_str());
}

// Everything a stage needs about the model being tuned.
struct JobState {
  std::string base_dir;                // the base model folder
  std::unique_ptr<LoadedModel> model;  // config, base weights, transformer
  std::unique_ptr<Tokenizer> tokenizer;
  int32_t end_id = 0;
  std::shared_ptr<const ModelWeights> current;  // weights after the stages so far
  std::unique_ptr<Task> task;
  std::vector<TaskExample> held_out;
  std::unique_ptr<Communicator> comm;
  bool verbose = false;  // rank 0 with progress
  const RunJobOptions* opts = nullptr;
  // The distill stage's output, when it ran: the default data of sft / dpo.
  std::optional<DistillResult> distilled;
  // The compress stage's pack file and the base + pack weights, when it ran.
  std::string pack_path;
  std::shared_ptr<const ModelWeights> composed;
  // The last training stage's weights when it trained LoRA (export writes
  // them to DIR/adapter), else null.
  std::shared_ptr<const TrainableWeights> adapter;

  bool Cancelled() const { return opts->cancel != nullptr && opts->cancel->load(); }
  Status CheckCancelled(absl::string_view before) const {
    if (!Cancelled()) return absl::OkStatus();
    return absl::CancelledError(absl::StrCat("job cancelled before ", before));
  }
  void Report(const JobProgressUpdate& u) const {
    if (opts->on_progress) opts->on_progress(u);
  }
};

// Reports a stage's steps to RunJobOptions::on_progress with an ETA from the
// stage's rate so far.
class StageProgress {
 public:
  // The stage's start was reported by the runner (RunStage).
  StageProgress(const JobState& st, std::string stage) : st_(st), stage_(std::move(stage)) {}
  void Update(int64_t step, int64_t total, double loss) {
    if (first_step_ < 0) first_step_ = step - 1;
    const int64_t done = step - first_step_;
    JobProgressUpdate u;
    u.stage = stage_;
    u.step = step;
    u.total_steps = total;
    u.loss = loss;
    u.eta_seconds = done > 0 ? SecondsSince(start_) / done * static_cast<double>(total - step) : 0;
    st_.Report(u);
  }

 private:
  const JobState& st_;
  std::string stage_;
  int64_t first_step_ = -1;
  Clock::time_point start_ = Clock::now();
};

double LossOf(const StepLog& s) {
  auto it = s.metrics.find("loss");
  return it == s.metrics.end() ? 0.0 : it->second;
}

StatusOr<std::vector<TokenizedSequence>> TokenizeSft(const JobState& st, const JobSpec& job,
                                                     const TrainStageSpec& spec) {
  std::vector<SftRecord> records;
  if (!spec.data.empty()) {
    ASSIGN_OR_RETURN(records, ReadSftJsonl(spec.data, *st.tokenizer));
  } else if (st.distilled) {
    records = st.distilled->sft;
    if (records.empty()) {
      return absl::FailedPreconditionError(
          "job.stages.sft: the distill stage kept no sample (no source passed the scorer on any prompt)");
    }
  } else {
    ASSIGN_OR_RETURN(std::vector<TaskExample> ex,
                     GenerateTaskExamples(*st.task, TaskSplit::kTrain, job.train_examples, job.seed, false));
    for (TaskExample& e : ex) records.push_back({std::move(e.prompt), std::move(e.response), false});
  }
  SequenceEncoder enc(*st.tokenizer, st.end_id, spec.max_seq_len);
  std::vector<TokenizedSequence> seqs;
  for (size_t i = 0; i < records.size(); ++i) {
    StatusOr<TokenizedSequence> s = enc.Encode(records[i].prompt, records[i].response, records[i].templated);
    if (!s.ok()) return Annotate(s.status(), absl::StrCat("stages.sft: example ", i + 1));
    seqs.push_back(std::move(*s));
  }
  return seqs;
}

StatusOr<std::vector<TokenizedPair>> TokenizePairs(const JobState& st, const std::vector<PreferenceRecord>& records,
                                                   int64_t max_seq_len, absl::string_view what) {
  SequenceEncoder enc(*st.tokenizer, st.end_id, max_seq_len);
  std::vector<TokenizedPair> pairs;
  for (size_t i = 0; i < records.size(); ++i) {
    const PreferenceRecord& r = records[i];
    StatusOr<TokenizedSequence> c = enc.Encode(r.prompt, r.chosen, r.templated);
    StatusOr<TokenizedSequence> j = enc.Encode(r.prompt, r.rejected, r.templated);
    if (!c.ok()) return Annotate(c.status(), absl::StrCat(what, ": pair ", i + 1));
    if (!j.ok()) return Annotate(j.status(), absl::StrCat(what, ": pair ", i + 1));
    pairs.push_back({std::move(*c), std::move(*j)});
  }
  return pairs;
}

std::vector<PreferenceRecord> ToRecords(std::vector<TaskPreference> prefs) {
  std::vector<PreferenceRecord> out;
  for (TaskPreference& p : prefs) {
    out.push_back({std::move(p.prompt), std::move(p.chosen), std::move(p.rejected), false});
  }
  return out;
}

LoopConfig StageLoop(const TrainStageSpec& spec, const JobSpec& job, const RunJobOptions& opts,
                     absl::string_view stage) {
  LoopConfig loop = spec.loop;
  loop.seed = job.seed;
  loop.checkpoint_dir = JoinPath(JoinPath(opts.out_dir, "checkpoints"), stage);
  loop.resume = opts.resume;
  loop.cancel = opts.cancel;
  return loop;
}

// One stage's training loop with its progress bar and progress reports;
// returns the loop's report (LoopReport).
StatusOr<Json> TrainStage(JobState& st, TrainableWeights& tw, TrainingObjective& objective, const TrainStageSpec& spec,
                          const JobSpec& job, const RunJobOptions& opts, absl::string_view stage) {
  const std::string name(stage);
  ProgressBar bar(name, st.verbose);
  StageProgress progress(st, name);
  ASSIGN_OR_RETURN(LoopResult result, RunTrainingLoop(tw, objective, StageLoop(spec, job, opts, stage), st.comm.get(),
                                                      [&](const StepLog& s, int64_t total) {
                                                        bar.Update(s, total);
                                                        progress.Update(s.step, total, LossOf(s));
                                                      }));
  bar.Done();
  return LoopReport(result, spec.loop, tw);
}

// A training stage's weights over the model so far: every tensor, a fresh
// LoRA adapter, or the adapter lora.init continued, which must have been
// trained over this same model (its recorded fingerprint). *start is the
// policy the stage starts from: the model so far, or it plus lora.init.
StatusOr<std::unique_ptr<TrainableWeights>> StageWeights(const JobState& st, const LoraConfig& lora, uint64_t seed,
                                                         absl::string_view stage,
                                                         std::shared_ptr<const ModelWeights>* start) {
  *start = st.current;
  if (lora.init.empty()) return TrainableWeights::Create(st.current, lora, seed);
  const std::string field = absl::StrCat("job.stages.", stage, ".lora.init");
  StatusOr<LoraAdapter> adapter = ReadLoraAdapter(lora.init);
  if (!adapter.ok()) return Annotate(adapter.status(), field);
  if (adapter->config.rank != lora.rank || adapter->config.alpha != lora.alpha) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", lora.init, " has r ", adapter->config.rank,
                                                   " / lora_alpha ", adapter->config.alpha, ", the stage rank ",
                                                   lora.rank, " / alpha ", lora.alpha));
  }
  if (!adapter->base_fingerprint.empty()) {
    ASSIGN_OR_RETURN(std::string here, BaseFingerprint(*st.current));
    if (here != adapter->base_fingerprint) {
      return absl::FailedPreconditionError(absl::StrCat(field, ": ", lora.init, " was trained over the model ",
                                                        adapter->base_fingerprint, ", and this stage starts from ",
                                                        here));
    }
  }
  StatusOr<std::unique_ptr<TrainableWeights>> tw = TrainableWeights::Create(st.current, lora, seed, &adapter->tensors);
  if (!tw.ok()) return Annotate(tw.status(), absl::StrCat(field, " ", lora.init));
  ASSIGN_OR_RETURN(*start, (*tw)->Merged());
  return tw;
}

StatusOr<Json> RunSftStage(JobState& st, const JobSpec& job, const TrainStageSpec& spec, const RunJobOptions& opts) {
  ASSIGN_OR_RETURN(std::vector<TokenizedSequence> seqs, TokenizeSft(st, job, spec));
  Log(st.verbose, absl::StrCat("[sft] ", seqs.size(), " examples"));
  std::shared_ptr<const ModelWeights> start;
  ASSIGN_OR_RETURN(std::unique_ptr<TrainableWeights> tw, StageWeights(st, spec.lora, job.seed, "sft", &start));
  // The held-out loss of the policy the stage starts from, scored now so that
  // `start` (a merged copy when an adapter is continued) is not kept through training.
  std::vector<TokenizedSequence> held;
  double held_before = 0;
  if (!st.held_out.empty()) {
    SequenceEncoder enc(*st.tokenizer, st.end_id, spec.max_seq_len);
    for (const TaskExample& e : st.held_out) {
      ASSIGN_OR_RETURN(TokenizedSequence s, enc.Encode(e.prompt, e.response, false));
      held.push_back(std::move(s));
    }
    ASSIGN_OR_RETURN(held_before, ResponseLoss(*st.model->transformer, *start, held, 64));
  }
  start.reset();
  SftObjective objective(*st.model->transformer, std::move(seqs));
  ASSIGN_OR_RETURN(Json report, TrainStage(st, *tw, objective, spec, job, opts, "sft"));
  ASSIGN_OR_RETURN(st.current, tw->Merged());
  st.adapter = spec.lora.enabled() ? std::shared_ptr<const TrainableWeights>(std::move(tw)) : nullptr;
  if (!held.empty()) {
    ASSIGN_OR_RETURN(double after, ResponseLoss(*st.model->transformer, *st.current, held, 64));
    report["held_out_loss"] = {{"before", held_before}, {"after", after}};
  }
  return report;
}

StatusOr<Json> RunDpoStage(JobState& st, const JobSpec& job, const DpoStageSpec& spec, const RunJobOptions& opts) {
  std::vector<PreferenceRecord> records;
  if (!spec.train.data.empty()) {
    ASSIGN_OR_RETURN(records, ReadPreferenceJsonl(spec.train.data));
  } else if (st.distilled) {
    records = st.distilled->pairs;
    if (records.empty()) {
      return absl::FailedPreconditionError(
          "job.stages.dpo: the distill stage made no pair (no prompt had both a better and a worse sample)");
    }
  } else {
    ASSIGN_OR_RETURN(std::vector<TaskPreference> prefs,
                     GenerateTaskPreferences(*st.task, TaskSplit::kTrain, job.train_examples, job.seed + 7, false));
    records = ToRecords(std::move(prefs));
  }
  ASSIGN_OR_RETURN(std::vector<TokenizedPair> pairs, TokenizePairs(st, records, spec.train.max_seq_len, "stages.dpo"));
  std::vector<TokenizedPair> eval_pairs;
  if (st.task != nullptr && spec.eval_pairs > 0) {
    ASSIGN_OR_RETURN(std::vector<TaskPreference> prefs,
                     GenerateTaskPreferences(*st.task, TaskSplit::kHeldOut, spec.eval_pairs, job.seed + 11, true));
    ASSIGN_OR_RETURN(eval_pairs, TokenizePairs(st, ToRecords(std::move(prefs)), spec.train.max_seq_len,
                                               "stages.dpo held-out pairs"));
  }
  Log(st.verbose, absl::StrCat("[dpo] ", pairs.size(), " pairs"));
  // The reference is the policy the stage starts from.
  std::shared_ptr<const ModelWeights> reference;
  ASSIGN_OR_RETURN(std::unique_ptr<TrainableWeights> tw,
                   StageWeights(st, spec.train.lora, job.seed + 1, "dpo", &reference));
  DpoObjective objective(*st.model->transformer, reference, std::move(pairs), spec.dpo);
  Json report;
  if (!eval_pairs.empty()) {
    ASSIGN_OR_RETURN(PreferenceMetrics before,
                     EvaluatePreferences(*st.model->transformer, *reference, *reference, eval_pairs, spec.dpo, 64));
    report["held_out_before"] = PreferenceMetricsToJson(before);
  }
  ASSIGN_OR_RETURN(Json loop, TrainStage(st, *tw, objective, spec.train, job, opts, "dpo"));
  for (auto& [k, v] : loop.items()) report[k] = v;
  report["beta"] = spec.dpo.beta;
  report["length_normalize"] = spec.dpo.length_normalize;
  report["sft_weight"] = spec.dpo.sft_weight;
  report["first_difference"] = spec.dpo.first_difference;
  report["dpop_lambda"] = spec.dpo.dpop_lambda;
  ASSIGN_OR_RETURN(st.current, tw->Merged());
  st.adapter = spec.train.lora.enabled() ? std::shared_ptr<const TrainableWeights>(std::move(tw)) : nullptr;
  if (!eval_pairs.empty()) {
    ASSIGN_OR_RETURN(PreferenceMetrics after,
                     EvaluatePreferences(*st.model->transformer, *st.current, *reference, eval_pairs, spec.dpo, 64));
    report["held_out_after"] = PreferenceMetricsToJson(after);
  }
  return report;
}

// What a stage writes besides its own report: the job report (some stages
// add top-level fields) and the timings.
struct StageOutput {
  Json& report;
  Json& timings;
};

// Held-out exact match of `weights` on the job's task, recorded as
// report.eval[eval_key] and (when `stage` is set) report.stages[stage].held_out_accuracy.
Status EvaluateHeldOut(JobState& st, const std::shared_ptr<const ModelWeights>& weights, const char* stage,
                       const char* eval_key, const std::string& timing_key, const std::string& label,
                       StageOutput& out) {
  if (st.task == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(st.CheckCancelled("evaluation"));
  st.Report({"eval"});
  const Clock::time_point t = Clock::now();
  ASSIGN_OR_RETURN(TaskEvalResult r,
                   EvaluateTask(*st.model->transformer, weights, *st.tokenizer, *st.task, st.held_out));
  if (stage != nullptr) out.report["stages"][stage]["held_out_accuracy"] = r.accuracy;
  out.report["eval"][eval_key] = TaskEvalResultToJson(r);
  out.timings[timing_key] = SecondsSince(t);
  Log(st.verbose,
      absl::StrFormat("[eval] held-out exact match %s: %.3f (%d/%d)", label, r.accuracy, r.correct, r.total));
  return absl::OkStatus();
}

// Next-token pretraining of every weight on the corpus plus the task mixture;
// report.stages.pretrain holds the data's sizes, the loop and the held-out
// text loss / perplexity before and after.
Status PretrainStage(JobState& st, const JobSpec& job, StageOutput& out) {
  const PretrainStageSpec& spec = *job.pretrain;
  const Clock::time_point t = Clock::now();
  StatusOr<std::vector<CorpusDocument>> docs = ReadCorpus(spec.corpus);
  if (!docs.ok()) return Annotate(docs.status(), "job.stages.pretrain.corpus");
  PretrainDataOptions o;
  o.window = spec.train.max_seq_len;
  o.held_out_fraction = spec.held_out_fraction;
  o.task_fraction = spec.mixture_fraction;
  o.tasks = spec.mixture_tasks;
  o.seed = job.seed;
  StatusOr<PretrainData> data = BuildPretrainData(*docs, *st.tokenizer, st.end_id, o);
  if (!data.ok()) return Annotate(data.status(), "job.stages.pretrain");
  Json report;
  report["corpus"] = {
      {"paths", spec.corpus}, {"files", docs->size()}, {"bytes", data->corpus_bytes}, {"tokens", data->corpus_tokens}};
  report["window"] = spec.train.max_seq_len;
  report["train_text_windows"] = data->text_windows;
  report["held_out_windows"] = static_cast<int64_t>(data->held_out.size());
  report["mixture"] = {
      {"tasks", spec.mixture_tasks}, {"fraction", spec.mixture_fraction}, {"examples", data->task_examples}};
  report["data_seconds"] = SecondsSince(t);
  Log(st.verbose, absl::StrCat("[pretrain] ", docs->size(), " files, ", data->corpus_bytes, " bytes: ",
                               data->text_windows, " training windows of ", spec.train.max_seq_len, " tokens, ",
                               data->held_out.size(), " held out, ", data->task_examples, " task examples"));
  std::vector<TokenizedSequence> held_out = std::move(data->held_out);
  auto score = [&](const char* key) -> Status {
    if (held_out.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(double loss, ResponseLoss(*st.model->transformer, *st.current, held_out, 32));
    report[key] = {{"loss", loss}, {"perplexity", std::exp(loss)}};
    Log(st.verbose,
        absl::StrFormat("[pretrain] held-out text loss %s: %.4f (perplexity %.2f)", key, loss, std::exp(loss)));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(score("held_out_before"));
  RETURN_IF_ERROR(st.CheckCancelled("pretraining"));
  ASSIGN_OR_RETURN(std::unique_ptr<TrainableWeights> tw, TrainableWeights::Create(st.current, LoraConfig{}, job.seed));
  SftObjective objective(*st.model->transformer, std::move(data->train));
  ASSIGN_OR_RETURN(Json loop, TrainStage(st, *tw, objective, spec.train, job, *st.opts, "pretrain"));
  for (auto& [k, v] : loop.items()) report[k] = v;
  ASSIGN_OR_RETURN(st.current, tw->Merged());
  RETURN_IF_ERROR(score("held_out_after"));
  out.report["stages"]["pretrain"] = report;
  return absl::OkStatus();
}

Status DistillStage(JobState& st, const JobSpec& job, StageOutput& out) {
  // Every rank needs the same data; rank 0 asks the servers and the others
  // read its files after a barrier.
  const bool lead = st.comm->rank() == 0;
  if (lead) {
    StageProgress progress(st, "distill");
    DistillControl control;
    control.cancel = st.opts->cancel;
    control.progress = [&](int64_t done, int64_t total) { progress.Update(done, total, 0); };
    ASSIGN_OR_RETURN(DistillResult d, RunDistillStage(*job.distill, job.seed, st.opts->out_dir, control));
    Log(st.verbose, absl::StrCat("[distill] ", d.sft.size(), " SFT examples, ", d.pairs.size(), " DPO pairs from ",
                                 job.distill->sources.size(), " sources"));
    out.report["stages"]["distill"] = d.report;
    st.distilled = std::move(d);
  }
  RETURN_IF_ERROR(st.comm->Barrier());
  if (!lead) {
    DistillResult d;
    d.sft_path = JoinPath(JoinPath(st.opts->out_dir, "distill"), "sft.jsonl");
    d.pairs_path = JoinPath(JoinPath(st.opts->out_dir, "distill"), "pairs.jsonl");
    ASSIGN_OR_RETURN(std::string sft_text, ReadFileToString(d.sft_path));
    if (!sft_text.empty()) {
      ASSIGN_OR_RETURN(d.sft, ReadSftJsonl(d.sft_path, *st.tokenizer));
    }
    ASSIGN_OR_RETURN(std::string pairs_text, ReadFileToString(d.pairs_path));
    if (!pairs_text.empty()) {
      ASSIGN_OR_RETURN(d.pairs, ReadPreferenceJsonl(d.pairs_path));
    }
    st.distilled = std::move(d);
  }
  return absl::OkStatus();
}

Status SftStage(JobState& st, const JobSpec& job, StageOutput& out) {
  ASSIGN_OR_RETURN(out.report["stages"]["sft"], RunSftStage(st, job, *job.sft, *st.opts));
  return absl::OkStatus();
}

Status DpoStage(JobState& st, const JobSpec& job, StageOutput& out) {
  ASSIGN_OR_RETURN(out.report["stages"]["dpo"], RunDpoStage(st, job, *job.dpo, *st.opts));
  return absl::OkStatus();
}

Status ExportStage(JobState& st, const JobSpec&, StageOutput& out) {
  const std::string model_dir = JoinPath(st.opts->out_dir, "model");
  RETURN_IF_ERROR(ExportModelFolder(*st.current, st.base_dir, model_dir));
  out.report["output_model"] = model_dir;
  if (st.adapter != nullptr) {
    const std::string adapter_dir = JoinPath(st.opts->out_dir, "adapter");
    ASSIGN_OR_RETURN(std::string fingerprint, BaseFingerprint(st.adapter->base()));
    RETURN_IF_ERROR(WriteLoraAdapter(*st.adapter, fingerprint, adapter_dir));
    out.report["output_adapter"] = adapter_dir;
  }
  return absl::OkStatus();
}

// The compress stage's calibration Hessians: the first calib_samples training
// sequences (the sft stage's data, else the task's training examples),
// prompt + response, run through the tuned model (or the base). Null when
// calib_samples is 0.
StatusOr<std::unique_ptr<CalibrationStats>> CompressCalibration(const JobState& st, const JobSpec& job) {
  const CompressStageSpec& spec = *job.compress;
  if (spec.calib_samples == 0) return std::unique_ptr<CalibrationStats>();
  TrainStageSpec data;
  if (job.sft) data = *job.sft;
  if (spec.calib_max_len > 0) data.max_seq_len = spec.calib_max_len;
  std::vector<TokenizedSequence> seqs;
  if (job.sft || st.distilled || st.task) {
    ASSIGN_OR_RETURN(seqs, TokenizeSft(st, job, data));
  } else {
    return absl::FailedPreconditionError(
        "job.stages.compress.calibration: the job has no training data to calibrate on (set samples to 0)");
  }
  std::vector<std::vector<int32_t>> tokens;
  for (size_t i = 0; i < seqs.size() && static_cast<int64_t>(tokens.size()) < spec.calib_samples; ++i) {
    if (!seqs[i].tokens.empty()) tokens.push_back(std::move(seqs[i].tokens));
  }
  const ModelWeights& model = spec.calib_on_tuned ? *st.current : *st.model->weights;
  ASSIGN_OR_RETURN(CalibrationStats stats, CaptureCalibration(model, tokens));
  Log(st.verbose, absl::StrCat("[compress] calibration on the ", spec.calib_on_tuned ? "tuned" : "base",
                               " model: ", stats.num_sequences, " sequences, ", stats.num_tokens, " tokens"));
  return std::make_unique<CalibrationStats>(std::move(stats));
}

Status CompressStage(JobState& st, const JobSpec& job, StageOutput& out) {
  ASSIGN_OR_RETURN(std::unique_ptr<CalibrationStats> calib, CompressCalibration(st, job));
  PackRefitFn refit;
  if (job.compress->refit) {
    const TrainStageSpec& spec = *job.compress->refit;
    refit = [&](const SkillPack& pack) -> StatusOr<RefitResult> {
      ASSIGN_OR_RETURN(std::vector<TokenizedSequence> seqs, TokenizeSft(st, job, spec));
      Log(st.verbose, absl::StrCat("[refit] ", seqs.size(), " examples, distilled from the tuned model"));
      ASSIGN_OR_RETURN(RefitResult r, RefitPack(
                                          pack, st.model->weights, st.current, *st.model->transformer, std::move(seqs),
                                          [&](TrainableWeights& tw, TrainingObjective& obj) {
                                            return TrainStage(st, tw, obj, spec, job, *st.opts, "refit");
                                          },
                                          job.compress->refit_skip_below_kl));
      if (r.report.value("skipped", false)) {
        Log(st.verbose, absl::StrFormat("[refit] validation KL %.4f <= skip_below_kl %.4f: no refit, kept the pack",
                                        r.report["kl_before"].get<double>(), job.compress->refit_skip_below_kl));
      } else {
        Log(st.verbose,
            absl::StrFormat("[refit] validation KL %.4f -> %.4f: kept the %s pack", r.report["kl_before"].get<double>(),
                            r.report["kl_after"].get<double>(), r.report["kept"].get<std::string>()));
      }
      return r;
    };
  }
  ASSIGN_OR_RETURN(CompressStageResult packed, RunCompressStage(*job.compress, *st.model->weights, *st.current, job,
                                                                st.opts->out_dir, calib.get(), refit));
  if (calib) packed.report["calibration_model"] = job.compress->calib_on_tuned ? "tuned" : "base";
  st.pack_path = packed.report["path"].get<std::string>();
  st.composed = packed.composed;
  out.report["stages"]["compress"] = packed.report;
  return absl::OkStatus();
}

Status RouterStage(JobState& st, const JobSpec& job, StageOutput& out) {
  ASSIGN_OR_RETURN(out.report["stages"]["router"], RunRouterStage(*job.router, *st.model->transformer,
                                                                  *st.model->weights, *st.tokenizer, st.opts->out_dir));
  Log(st.verbose, absl::StrFormat("[router] held-out routing accuracy %.3f",
                                  out.report["stages"]["router"]["holdout_accuracy"].get<double>()));
  return absl::OkStatus();
}

Status PublishStage(JobState& st, const JobSpec& job, StageOutput& out) {
  const std::string what = job.publish->pack.empty() ? st.pack_path : job.publish->pack;
  StatusOr<Json> published = PublishPack(*job.publish, what);
  if (!published.ok()) return Annotate(published.status(), "job.stages.publish");
  out.report["stages"]["publish"] = *published;
  Log(st.verbose, absl::StrCat("[publish] ", what, " -> ", job.publish->server));
  return absl::OkStatus();
}

// Held-out exact match after a training stage (the weights so far) and of
// base + pack after compress.
Status EvaluateAfterPretrain(JobState& st, StageOutput& out) {
  return EvaluateHeldOut(st, st.current, "pretrain", "after_pretrain", "eval_after_pretrain_seconds", "after pretrain",
                         out);
}
Status EvaluateAfterSft(JobState& st, StageOutput& out) {
  return EvaluateHeldOut(st, st.current, "sft", "after", "eval_after_sft_seconds", "after sft", out);
}
Status EvaluateAfterDpo(JobState& st, StageOutput& out) {
  return EvaluateHeldOut(st, st.current, "dpo", "after", "eval_after_dpo_seconds", "after dpo", out);
}
Status EvaluatePack(JobState& st, StageOutput& out) {
  return EvaluateHeldOut(st, st.composed, "compress", "base_plus_pack", "eval_pack_seconds", "of base + pack", out);
}

// The pipeline, in order. Every stage runs through RunStage: a cancellation
// check, a progress report, its body, "<name>_seconds", then its evaluation.
struct Stage {
  const char* name;
  bool in_spec;    // a key of job.stages (export always runs)
  bool all_ranks;  // false: rank 0 only
  bool (*present)(const JobSpec&);
  Status (*run)(JobState&, const JobSpec&, StageOutput&);
  Status (*evaluate)(JobState&, StageOutput&);  // null: none (rank 0 only)
};

const Stage kStages[] = {
    {"pretrain", true, true, [](const JobSpec& j) { return j.pretrain.has_value(); }, PretrainStage,
     EvaluateAfterPretrain},
    {"distill", true, true, [](const JobSpec& j) { return j.distill.has_value(); }, DistillStage, nullptr},
    {"sft", true, true, [](const JobSpec& j) { return j.sft.has_value(); }, SftStage, EvaluateAfterSft},
    {"dpo", true, true, [](const JobSpec& j) { return j.dpo.has_value(); }, DpoStage, EvaluateAfterDpo},
    {"export", false, false, [](const JobSpec&) { return true; }, ExportStage, nullptr},
    {"compress", true, false, [](const JobSpec& j) { return j.compress.has_value(); }, CompressStage, EvaluatePack},
    {"router", true, false, [](const JobSpec& j) { return j.router.has_value(); }, RouterStage, nullptr},
    {"publish", true, false, [](const JobSpec& j) { return j.publish.has_value(); }, PublishStage, nullptr},
};

Status RunStage(const Stage& stage, JobState& st, const JobSpec& job, StageOutput& out) {
  if (st.Cancelled()) {
    // A cancelled job leaves no pack (RunJobOptions::cancel).
    if (!st.pack_path.empty()) std::remove(st.pack_path.c_str());
    return absl::CancelledError(
        absl::StrCat("job cancelled before ", stage.name, st.pack_path.empty() ? "" : " (its pack was removed)"));
  }
  st.Report({stage.name});
  const Clock::time_point t = Clock::now();
  RETURN_IF_ERROR(stage.run(st, job, out));
  if (st.Cancelled() && !st.pack_path.empty()) {
    // The stage finished after the flag was set (compress writes its pack atomically).
    std::remove(st.pack_path.c_str());
    return absl::CancelledError(absl::StrCat("job cancelled during ", stage.name, " (its pack was removed)"));
  }
  out.timings[absl::StrCat(stage.name, "_seconds")] = SecondsSince(t);
  if (stage.evaluate != nullptr && st.comm->rank() == 0) RETURN_IF_ERROR(stage.evaluate(st, out));
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& JobStageNames() {
  static const auto* kNames = [] {
    auto* names = new std::vector<std::string>;
    for (const Stage& s : kStages) {
      if (s.in_spec) names->push_back(s.name);
    }
    return names;
  }();
  return *kNames;
}

Status ParseJobBaseModel(const Json& base, const std::string& base_dir, JobSpec* job) {
  if (base.is_string()) {
    job->base_model_dir = ResolvePath(base_dir, base.get<std::string>());
    if (!IsDirectory(job->base_model_dir)) {
      return absl::InvalidArgumentError(absl::StrCat("job.base_model: not a folder: ", job->base_model_dir));
    }
    if (!PathExists(JoinPath(job->base_model_dir, "config.json"))) {
      return absl::InvalidArgumentError(absl::StrCat("job.base_model: no config.json in ", job->base_model_dir));
    }
  } else {
    FieldReader b(base, "job.base_model");
    RETURN_IF_ERROR(b.CheckObject());
    if (!b.Has("tiny"))
      return absl::InvalidArgumentError("job.base_model: expected a folder path or {\"tiny\": {...}}");
    TinyModelOptions o;
    RETURN_IF_ERROR(ParseTinyBase(b.Get("tiny"), "job.base_model.tiny", &o));
    RETURN_IF_ERROR(b.Finish());
    job->tiny_base = o;
  }
  return absl::OkStatus();
}

StatusOr<JobSpec> ParseJobSpec(const Json& j, const std::string& base_dir) {
  JobSpec job;
  FieldReader r(j, "job");
  RETURN_IF_ERROR(r.CheckObject());
  RETURN_IF_ERROR(r.Read("name", &job.name));
  RETURN_IF_ERROR(r.Read("seed", &job.seed));
  RETURN_IF_ERROR(r.ReadInRange("threads", &job.threads, 0, 1024));
  if (!r.Has("base_model"))
    return absl::InvalidArgumentError("job.base_model: missing (a folder or {\"tiny\": {...}})");
  RETURN_IF_ERROR(ParseJobBaseModel(r.Get("base_model"), base_dir, &job));
  if (r.Has("task")) {
    FieldReader t(r.Get("task"), "job.task");
    RETURN_IF_ERROR(t.CheckObject());
    RETURN_IF_ERROR(GetField<std::string>(r.Get("task"), "name", "job.task").status());
    RETURN_IF_ERROR(t.Read("name", &job.task));
    StatusOr<std::unique_ptr<Task>> task = MakeTask(job.task);
    if (!task.ok()) return Annotate(task.status(), "job.task.name");
    RETURN_IF_ERROR(t.ReadInRange<int64_t>("held_out", &job.held_out, 1, 100000));
    RETURN_IF_ERROR(t.ReadInRange<int64_t>("train_examples", &job.train_examples, 1, 10000000));
    RETURN_IF_ERROR(t.Finish());
  }
  if (!r.Has("stages")) return absl::InvalidArgumentError("job.stages: missing");
  const Json& stages = r.Get("stages");
  FieldReader s(stages, "job.stages");
  RETURN_IF_ERROR(s.CheckObject());
  for (const auto& [name, value] : stages.items()) {
    const auto& known = JobStageNames();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("job.stages.", name, ": unknown stage (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  if (stages.empty()) return absl::InvalidArgumentError("job.stages: no stage given");
  if (s.Has("pretrain")) {
    PretrainStageSpec spec;
    RETURN_IF_ERROR(ParsePretrainStage(s.Get("pretrain"), base_dir, "job.stages.pretrain", &spec));
    job.pretrain = std::move(spec);
  }
  if (s.Has("distill")) {
    ASSIGN_OR_RETURN(DistillStageSpec d, ParseDistillStage(s.Get("distill"), "job.stages.distill", base_dir, job.task));
    job.distill = std::move(d);
  }
  if (s.Has("sft")) {
    const std::string path = "job.stages.sft";
    FieldReader st(s.Get("sft"), path);
    RETURN_IF_ERROR(st.CheckObject());
    TrainStageSpec spec;
    RETURN_IF_ERROR(ParseTrainStage(st, base_dir, &spec, path));
    RETURN_IF_ERROR(st.Finish());
    if (spec.data.empty() && job.task.empty() && !job.distill) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".data: required when the job names no task and has no distill stage"));
    }
    job.sft = spec;
  }
  if (s.Has("dpo")) {
    const std::string path = "job.stages.dpo";
    FieldReader st(s.Get("dpo"), path);
    RETURN_IF_ERROR(st.CheckObject());
    DpoStageSpec spec;
    spec.train.loop.optim.lr = 1e-4;
    RETURN_IF_ERROR(ParseTrainStage(st, base_dir, &spec.train, path));
    RETURN_IF_ERROR(st.ReadInRange<double>("beta", &spec.dpo.beta, 1e-6, 100.0));
    RETURN_IF_ERROR(st.Read("length_normalize", &spec.dpo.length_normalize));
    RETURN_IF_ERROR(st.ReadInRange<double>("sft_weight", &spec.dpo.sft_weight, 0.0, 100.0));
    RETURN_IF_ERROR(st.Read("first_difference", &spec.dpo.first_difference));
    RETURN_IF_ERROR(st.ReadInRange<double>("dpop_lambda", &spec.dpo.dpop_lambda, 0.0, 1000.0));
    RETURN_IF_ERROR(st.ReadInRange<int64_t>("eval_pairs", &spec.eval_pairs, 0, 100000));
    RETURN_IF_ERROR(st.Finish());
    if (spec.train.data.empty() && job.task.empty() && !job.distill) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".data: required when the job names no task and has no distill stage"));
    }
    job.dpo = spec;
  }
  if (s.Has("compress")) {
    const std::string path = "job.stages.compress";
    Json compress = s.Get("compress");
    Json refit;
    if (compress.is_object() && compress.contains("refit")) {
      refit = compress["refit"];
      compress.erase("refit");
    }
    RETURN_IF_ERROR(ParseCompressStage(compress, path, &job.compress));
    if (!refit.is_null()) {
      const std::string rpath = path + ".refit";
      FieldReader rr(refit, rpath);
      RETURN_IF_ERROR(rr.CheckObject());
      if (rr.Has("lora")) {
        return absl::InvalidArgumentError(
            absl::StrCat(rpath, ".lora: not allowed (a refit trains the pack's own numbers)"));
      }
      TrainStageSpec spec;
      if (job.sft) spec.max_seq_len = job.sft->max_seq_len;
      // Defaults: the settings measured on the pretrained tiny bases (bench/README.md,
      // "Packs refitted by distillation"): 300 steps at 3e-3, warming up over the
      // first 20 (a fifteenth of the steps, at most 20, when steps are given alone);
      // 100 steps at 1e-3 left 1/32 packs far short.
      spec.loop.steps = 300;
      spec.loop.optim.lr = 3e-3;
      const bool warmup_given = rr.Has("warmup_steps");
      RETURN_IF_ERROR(rr.ReadInRange<double>("skip_below_kl", &job.compress->refit_skip_below_kl, 0.0, 1e6));
      RETURN_IF_ERROR(ParseTrainStage(rr, base_dir, &spec, rpath));
      if (!warmup_given) spec.loop.optim.warmup_steps = std::min<int64_t>(20, spec.loop.steps / 15);
      RETURN_IF_ERROR(rr.Finish());
      if (spec.data.empty() && !job.sft && job.task.empty() && !job.distill) {
        return absl::InvalidArgumentError(
            absl::StrCat(rpath, ".data: required when the job names no task and has no sft or distill stage"));
      }
      if (spec.data.empty() && job.sft) spec.data = job.sft->data;
      job.compress->refit = std::move(spec);
    }
  }
  if (s.Has("router")) {
    ASSIGN_OR_RETURN(RouterStageSpec rs, ParseRouterStage(s.Get("router"), "job.stages.router", base_dir, job.seed));
    job.router = std::move(rs);
  }
  if (s.Has("publish")) {
    ASSIGN_OR_RETURN(PublishStageSpec p, ParsePublishStage(s.Get("publish"), "job.stages.publish", base_dir));
    if (p.pack.empty() && !job.compress) {
      return absl::InvalidArgumentError(
          "job.stages.publish.pack: required when the job has no compress stage (nothing to publish)");
    }
    job.publish = std::move(p);
  }
  RETURN_IF_ERROR(s.Finish());
  RETURN_IF_ERROR(r.Finish());
  return job;
}

StatusOr<JobSpec> LoadJobSpec(const std::string& path) {
  ASSIGN_OR_RETURN(Json j, ReadJsonFile(path));
  const size_t slash = path.rfind('/');
  return ParseJobSpec(j, slash == std::string::npos ? "." : path.substr(0, slash));
}

StatusOr<Json> RunJob(const JobSpec& job, const RunJobOptions& opts) {
  const Clock::time_point start = Clock::now();
  if (opts.out_dir.empty()) return absl::InvalidArgumentError("--out: an output folder is required");
  JobState st;
  st.opts = &opts;
  if (opts.cancel != nullptr && opts.dist.world_size > 1) {
    return absl::InvalidArgumentError("cancellation is for one-process jobs only");
  }
  ASSIGN_OR_RETURN(st.comm, Communicator::Create(opts.dist));
  const bool lead = st.comm->rank() == 0;
  st.verbose = lead && opts.progress;
  // 0: this machine's cores (core/cpu_threads.h, as the server's default),
  // shared among the job's ranks, which run on one machine (they share --out).
  SetIntraOpThreads(job.threads > 0 ? job.threads : std::max(1, CpuCoresAvailable() / st.comm->world_size()));
  if (lead) RETURN_IF_ERROR(MakeDirectories(opts.out_dir));
  Json report;
  report["job"] = job.name;
  report["world_size"] = st.comm->world_size();
  report["threads"] = at::get_num_threads();
  Json timings;

  // Base model.
  st.Report({"setup"});
  Clock::time_point t = Clock::now();
  if (job.tiny_base) {
    st.base_dir = JoinPath(opts.out_dir, "base");
    if (lead && !PathExists(JoinPath(st.base_dir, "config.json"))) {
      RETURN_IF_ERROR(InitTinyModel(*job.tiny_base, st.base_dir));
    }
    RETURN_IF_ERROR(st.comm->Barrier());  // other ranks read what rank 0 wrote
  } else {
    st.base_dir = job.base_model_dir;
  }
  ASSIGN_OR_RETURN(st.model, LoadModel(st.base_dir, at::TensorOptions().dtype(at::kFloat)));
  ASSIGN_OR_RETURN(st.tokenizer, Tokenizer::FromModelDir(st.base_dir));
  std::vector<int32_t> eos = EosIds(st.model->config, *st.tokenizer);
  if (eos.empty()) return absl::InvalidArgumentError(absl::StrCat(st.base_dir, ": the model has no eos token"));
  st.end_id = eos[0];
  st.current = st.model->weights;
  report["base_model"] = st.base_dir;
  report["parameters"] = st.model->config.NumParameters();
  timings["setup_seconds"] = SecondsSince(t);

  StageOutput out{report, timings};
  if (!job.task.empty()) {
    ASSIGN_OR_RETURN(st.task, MakeTask(job.task));
    ASSIGN_OR_RETURN(st.held_out, GenerateTaskExamples(*st.task, TaskSplit::kHeldOut, job.held_out, job.seed + 1000003,
                                                       /*unique=*/true));
    report["task"] = {{"name", job.task}, {"held_out", job.held_out}};
    if (lead) RETURN_IF_ERROR(EvaluateHeldOut(st, st.current, nullptr, "before", "eval_before_seconds", "before", out));
  }
  for (const Stage& stage : kStages) {
    if (!stage.present(job) || (!stage.all_ranks && !lead)) continue;
    RETURN_IF_ERROR(RunStage(stage, st, job, out));
  }
  RETURN_IF_ERROR(st.comm->Barrier());
  timings["total_seconds"] = SecondsSince(start);
  report["timings"] = timings;
  report["status"] = "ok";
  if (lead) RETURN_IF_ERROR(WriteFileAtomically(JoinPath(opts.out_dir, "report.json"), report.dump(2)));
  return report;
}

}  // namespace skillpack
