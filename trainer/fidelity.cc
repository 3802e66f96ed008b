#include "trainer/fidelity.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/cpu_threads.h"
#include "core/file_util.h"
#include "core/generator.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "pack/calibration.h"
#include "pack/composer.h"
#include "pack/compressor.h"
#include "pack/decode.h"
#include "pack/fingerprint.h"
#include "pack/format.h"
#include "pack/merge.h"
#include "router/policy.h"
#include "router/router.h"
#include "trainer/compress_stage.h"
#include "trainer/data.h"
#include "trainer/evaluate.h"
#include "trainer/pack_refit.h"
#include "trainer/pretrain.h"
#include "trainer/router_stage.h"
#include "trainer/spec_reader.h"
#include "trainer/svg_plot.h"
#include "trainer/tasks/paraphrase.h"
#include "trainer/tasks/phrasing_grammar.h"
#include "trainer/tasks/task.h"
#include "trainer/trainable.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;

// Table 4 lists each evaluation category's first this many misrouted prompts.
constexpr int64_t kMisroutedListed = 20;

// Table 4's held-out sets (paraphrase.h): the first, and the twelve fresh ones
// written before any router was scored on them; each scored as held-out
// templates and held-out general prompts (categories
// "paraphrases_<TemplateSplitName>_templates" and "general_<TemplateSplitName>"),
// from seeds of its own.
struct HeldOutSet {
  TemplateSplit split;
  uint64_t templates_seed, general_seed;  // added to the spec's seed
};
constexpr HeldOutSet kHeldOutSets[] = {
    {TemplateSplit::kHeldOut, 33, 34}, {TemplateSplit::kFresh, 35, 36},   {TemplateSplit::kFresh2, 37, 38},
    {TemplateSplit::kFresh3, 39, 40},  {TemplateSplit::kFresh4, 41, 42},  {TemplateSplit::kFresh5, 51, 52},
    {TemplateSplit::kFresh6, 53, 54},  {TemplateSplit::kFresh7, 55, 56},  {TemplateSplit::kFresh8, 57, 58},
    {TemplateSplit::kFresh9, 59, 60},  {TemplateSplit::kFresh10, 61, 62}, {TemplateSplit::kFresh11, 63, 64},
    {TemplateSplit::kFresh12, 65, 66},
};

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Errors of the job parser name "job.stages.sft.lr"; the study's fields are "spec.sft.lr".
Status AsSpecError(const Status& s) {
  if (s.ok()) return s;
  return Status(s.code(), absl::StrReplaceAll(s.message(), {{"job.stages.", "spec."}, {"job.", "spec."}}));
}

Status ReadRatio(FieldReader& r, const std::string& key, double* out) {
  RETURN_IF_ERROR(r.ReadInRange<double>(key, out, 1e-4, 1.0));
  return absl::OkStatus();
}

Status ValidateStudyTask(const std::string& name, const std::vector<std::string>& tasks, const std::string& path) {
  if (std::find(tasks.begin(), tasks.end(), name) == tasks.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": '", name, "' is not one of spec.tasks (", absl::StrJoin(tasks, ", "), ")"));
  }
  return absl::OkStatus();
}

std::string RatioTag(double ratio) { return absl::StrFormat("%g", ratio); }

// "1/16" for 0.0625, else the number.
std::string RatioLabel(double ratio) {
  const double inv = 1.0 / ratio;
  if (std::fabs(inv - std::round(inv)) < 1e-9) return absl::StrCat("1/", static_cast<int64_t>(std::round(inv)));
  return absl::StrFormat("%g", ratio);
}

// (x - base) / (ft - base); null when full FT gained nothing.
Json GainKept(double x, double base, double ft) {
  if (ft - base <= 1e-12) return nullptr;
  return (x - base) / (ft - base);
}

class Study {
 public:
  Study(const FidelitySpec& spec, const FidelityOptions& opts) : spec_(spec), opts_(opts) {}

  StatusOr<Json> Run();

 private:
  void Log(const std::string& line) const {
    if (opts_.progress) {
      std::fprintf(stderr, "[fidelity %6.0fs] %s\n", std::chrono::duration<double>(Clock::now() - start_).count(),
                   line.c_str());
    }
  }
  std::string RunsDir() const { return JoinPath(opts_.out_dir, "runs"); }
  std::string PacksDir() const { return JoinPath(opts_.out_dir, "packs"); }
  std::string ModelOf(const std::string& run) const { return JoinPath(JoinPath(RunsDir(), run), "model"); }

  Status Setup();
  JobSpec MakeJob(const std::string& name, const std::string& base_dir, const std::string& task) const;
  StatusOr<Json> RunCached(const std::string& name, const JobSpec& job);
  // The report of a finished run.
  StatusOr<Json> Report(const std::string& run) const {
    return ReadJsonFile(JoinPath(JoinPath(RunsDir(), run), "report.json"));
  }
  StatusOr<std::shared_ptr<const ModelWeights>> LoadWeights(const std::string& dir);
  StatusOr<double> Evaluate(std::shared_ptr<const ModelWeights> w, const std::string& task);
  StatusOr<double> ServedAccuracy(const std::string& path, const std::string& task, FactorPrecision precision);
  StatusOr<Json> Pack(const std::string& task, const std::string& regime, double ratio);
  StatusOr<const DecodedPack*> Decoded(const std::string& task, double ratio);
  // The run a regime's packs compress, as the runs finished so far say (no
  // run is started): a DPO round that found no on-policy pair (NoPairsMarker)
  // ends the rounds there.
  std::string ExpectedRegimeRun(const std::string& task, const std::string& regime) const {
    if (regime == "sft") return FtSftRun(task);
    const int64_t rounds = DpoRoundsFrom(FtDpoPrefix(task), FtSftRun(task));
    return rounds == 0 ? FtSftRun(task) : DpoRunName(FtDpoPrefix(task), rounds);
  }
  // Written when the model of `run` answered every on-policy prompt right:
  // no pair to train DPO on, so the rounds from it stop (DpoRounds).
  std::string NoPairsMarker(const std::string& run) const {
    return JoinPath(RunsDir(), run + "-onpolicy-no-pairs.json");
  }
  StatusOr<std::string> RegimeRun(const std::string& task, const std::string& regime);
  std::string DpoTag() const { return spec_.dpo_pairs == "on_policy" ? "-onpolicy" : ""; }
  // DPO round `round`'s run: `prefix`, the pairs' tag, and from round 2 on
  // "-r<round>" (round 1 keeps the name runs had before rounds existed, so
  // their caches stay valid).
  std::string DpoRunName(const std::string& prefix, int64_t round) const {
    return absl::StrCat(prefix, DpoTag(), round <= 1 ? "" : absl::StrCat("-r", round));
  }
  StatusOr<std::string> DpoRounds(const std::string& task, const std::string& prefix, const std::string& sft_run,
                                  const TrainStageSpec& train, bool continue_adapter);
  // Rounds of DPO that DpoRounds trains from `sft_run`, as the runs finished
  // so far say: spec_.dpo_rounds, unless a model before the last found no
  // on-policy pair (its NoPairsMarker), where the rounds stop.
  int64_t DpoRoundsFrom(const std::string& prefix, const std::string& sft_run) const;
  StatusOr<std::optional<std::string>> DpoPairs(const std::string& task, const std::string& sft_run);
  StatusOr<std::string> SftData(const std::string& task);
  TrainStageSpec LoraStage(const TrainStageSpec& stage, int64_t rank, double lr_scale) const;
  // The first `n` training examples of `task` (the spec's seed), tokenized.
  StatusOr<std::vector<TokenizedSequence>> TrainSequences(const std::string& task, int64_t n,
                                                          int64_t max_seq_len) const;
  // The packs' refit steps (0: none).
  int64_t RefitSteps() const { return spec_.refit ? spec_.refit->loop.steps : 0; }
  // The spec's refit settings as written ("" without one), which cached packs must match.
  std::string RefitKey() const {
    const Json& src = spec_.source;
    return src.contains("compress") && src["compress"].contains("refit") ? src["compress"]["refit"].dump() : "";
  }
  std::string LoraTag(int64_t rank) const;
  std::string LoraDpoTag() const;
  // Table 1's run names: full fine-tuning's SFT run and its DPO rounds'
  // prefix (DpoRunName), and the same for the LoRA of `rank`.
  static std::string FtSftRun(const std::string& task) { return absl::StrCat(task, "-ft-sft"); }
  static std::string FtDpoPrefix(const std::string& task) { return absl::StrCat(task, "-ft-sft_dpo"); }
  std::string LoraSftRun(const std::string& task, int64_t rank) const {
    return absl::StrCat(task, "-", LoraTag(rank), "-sft");
  }
  std::string LoraDpoPrefix(const std::string& task, int64_t rank) const {
    return absl::StrCat(task, "-", LoraTag(rank), LoraDpoTag(), "-sft_dpo_one_adapter");
  }
  StatusOr<std::string> LoraRun(const std::string& task, const std::string& regime, int64_t rank);
  StatusOr<std::vector<std::string>> Route(const std::vector<std::string>& prompts);
  // The labels `router` routes `prompts` to (top-1, threshold 0.5).
  StatusOr<std::vector<std::string>> Route(const std::vector<std::string>& prompts, const Router& router);
  StatusOr<double> RoutedAccuracy(const std::string& task, const std::map<std::string, double>& ratio_of);

  StatusOr<Json> Table1();
  StatusOr<Json> Table4();
  // Table 4's router trained here (spec.router's data, selection and
  // options; what it was trained on goes into *t; no corpus sentence equals
  // one of `held_out_general`, the evaluation's general prompts), or
  StatusOr<RouterTrainResult> TrainTable4Router(const std::vector<std::vector<std::string>>& held_out_general, Json* t);
  // read from spec.router.file, checked against the base and the tasks.
  Status LoadTable4Router(Json* t);
  // Each held-out set's general prompts (kHeldOutSets' order).
  std::vector<std::vector<std::string>> HeldOutGeneralPrompts() const;
  StatusOr<Json> Table2(const Json& table1);
  StatusOr<Json> Table3(const Json& table1);
  Status WritePlots(const Json& table1);

  const FidelitySpec& spec_;
  const FidelityOptions& opts_;
  Clock::time_point start_ = Clock::now();
  std::string base_dir_;
  std::unique_ptr<LoadedModel> base_;
  std::unique_ptr<Tokenizer> tok_;
  int32_t end_id_ = 0;
  int64_t fp16_delta_bytes_ = 0;
  int64_t lora_bytes_per_rank_ = 0;
  std::map<std::string, std::unique_ptr<Task>> tasks_;
  std::map<std::string, std::vector<TaskExample>> held_out_;
  std::unique_ptr<Router> router_;
  std::map<std::string, std::unique_ptr<DecodedPack>> decoded_;  // by pack name
  std::map<std::string, std::shared_ptr<const ModelWeights>> composed_;
};

Status Study::Setup() {
  SetIntraOpThreads(spec_.threads);  // 0: this machine's cores, as RunJob's default
  RETURN_IF_ERROR(MakeDirectories(RunsDir()));
  RETURN_IF_ERROR(MakeDirectories(PacksDir()));
  if (spec_.tiny_base) {
    base_dir_ = JoinPath(opts_.out_dir, "base");
    if (!PathExists(JoinPath(base_dir_, "config.json"))) RETURN_IF_ERROR(InitTinyModel(*spec_.tiny_base, base_dir_));
  } else {
    base_dir_ = spec_.base_model_dir;
  }
  ASSIGN_OR_RETURN(base_, LoadModel(base_dir_, at::TensorOptions().dtype(at::kFloat)));
  ASSIGN_OR_RETURN(tok_, Tokenizer::FromModelDir(base_dir_));
  std::vector<int32_t> eos = EosIds(base_->config, *tok_);
  if (eos.empty()) return absl::InvalidArgumentError(absl::StrCat(base_dir_, ": the model has no eos token"));
  end_id_ = eos[0];
  fp16_delta_bytes_ = Fp16DeltaBytes(*base_->weights);
  lora_bytes_per_rank_ = LoraBytesPerRank(*base_->weights);
  for (const std::string& t : spec_.tasks) {
    ASSIGN_OR_RETURN(tasks_[t], MakeTask(t));
    // The held-out set RunJob evaluates (job.cc: seed + 1000003, unique).
    ASSIGN_OR_RETURN(held_out_[t],
                     GenerateTaskExamples(*tasks_[t], TaskSplit::kHeldOut, spec_.held_out, spec_.seed + 1000003, true));
  }
  return absl::OkStatus();
}

JobSpec Study::MakeJob(const std::string& name, const std::string& base_dir, const std::string& task) const {
  JobSpec j;
  j.name = name;
  j.seed = spec_.seed;
  j.threads = spec_.threads;
  j.base_model_dir = base_dir;
  j.task = task;
  j.held_out = spec_.held_out;
  j.train_examples = spec_.train_examples;
  return j;
}

StatusOr<Json> Study::RunCached(const std::string& name, const JobSpec& job) {
  const std::string dir = JoinPath(RunsDir(), name);
  const std::string report = JoinPath(dir, "report.json");
  if (PathExists(report)) {
    StatusOr<Json> r = ReadJsonFile(report);
    // A LoRA run's adapter too: a later DPO run continues it.
    const bool lora = (job.sft && job.sft->lora.enabled()) || (job.dpo && job.dpo->train.lora.enabled());
    if (r.ok() && r->value("status", "") == "ok" && PathExists(JoinPath(dir, "model")) &&
        (!lora || PathExists(JoinPath(dir, "adapter")))) {
      return r;
    }
  }
  Log(absl::StrCat("run ", name));
  RunJobOptions o;
  o.out_dir = dir;
  o.progress = false;
  o.resume = false;
  StatusOr<Json> r = RunJob(job, o);
  if (!r.ok()) return Annotate(r.status(), absl::StrCat("fidelity run ", name));
  return r;
}

StatusOr<std::shared_ptr<const ModelWeights>> Study::LoadWeights(const std::string& dir) {
  ASSIGN_OR_RETURN(std::unique_ptr<LoadedModel> m, LoadModel(dir, at::TensorOptions().dtype(at::kFloat)));
  return m->weights;
}

StatusOr<double> Study::Evaluate(std::shared_ptr<const ModelWeights> w, const std::string& task) {
  ASSIGN_OR_RETURN(TaskEvalResult r,
                   EvaluateTask(*base_->transformer, std::move(w), *tok_, *tasks_.at(task), held_out_.at(task)));
  return r.accuracy;
}

// The DPO data of the model of run `sft_run`: "" for the verifier's offline
// pairs (the job's default: correct answer chosen, Task::WrongResponse
// rejected), else a JSONL of on-policy pairs: the model's own greedy answers
// to `dpo_prompts` training prompts, each wrong one rejected against the
// correct answer (answers with non-ASCII bytes are skipped: task answers are
// ASCII). nullopt (and NoPairsMarker written) when no answer is wrong: there
// is nothing for DPO to prefer against.
StatusOr<std::optional<std::string>> Study::DpoPairs(const std::string& task, const std::string& sft_run) {
  if (spec_.dpo_pairs != "on_policy") return std::optional<std::string>(std::string());
  const std::string path = JoinPath(RunsDir(), sft_run + "-onpolicy-pairs.jsonl");
  if (PathExists(path)) return std::optional<std::string>(path);
  if (PathExists(NoPairsMarker(sft_run))) return std::optional<std::string>();
  const Task& tk = *tasks_.at(task);
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> w, LoadWeights(ModelOf(sft_run)));
  ASSIGN_OR_RETURN(std::vector<TaskExample> prompts,
                   GenerateTaskExamples(tk, TaskSplit::kTrain, spec_.dpo_prompts, spec_.seed + 41, false));
  TaskEvalOptions o;
  o.num_samples = static_cast<int32_t>(prompts.size());
  ASSIGN_OR_RETURN(TaskEvalResult r, EvaluateTask(*base_->transformer, w, *tok_, tk, prompts, o));
  std::vector<PreferenceRecord> pairs;
  for (const std::vector<std::string>& s : r.samples) {
    const bool ascii = std::all_of(s[2].begin(), s[2].end(), [](char c) { return c > 0 && c < 0x7f; });
    if (ascii && !tk.Verify(s[0], s[2])) pairs.push_back({s[0], s[1], s[2], false});
  }
  if (pairs.empty()) {
    Log(absl::StrCat("dpo pairs for ", sft_run, ": none, all ", prompts.size(),
                     " training prompts answered right (or only with non-ASCII bytes): no DPO round from it"));
    RETURN_IF_ERROR(WriteFileAtomically(
        NoPairsMarker(sft_run), Json{{"run", sft_run}, {"prompts", prompts.size()}, {"wrong", 0}}.dump(2) + "\n"));
    return std::optional<std::string>();
  }
  RETURN_IF_ERROR(WritePreferenceJsonl(path, pairs));
  Log(absl::StrCat("dpo pairs for ", sft_run, ": ", pairs.size(), " wrong answers of ", prompts.size(), " prompts"));
  return std::optional<std::string>(path);
}

// Table 1's SFT data: "" (the job's own: the task's train split) unless
// sft_wrong_share > 0, then a JSONL of the same examples with that share
// answered by Task::WrongResponse (GenerateTaskExamplesWithMistakes).
StatusOr<std::string> Study::SftData(const std::string& task) {
  if (spec_.sft_wrong_share <= 0) return std::string();
  const std::string path = JoinPath(RunsDir(), absl::StrCat(task, "-sft-data.jsonl"));
  if (PathExists(path)) return path;
  const Task& tk = *tasks_.at(task);
  ASSIGN_OR_RETURN(
      std::vector<TaskExample> ex,
      GenerateTaskExamplesWithMistakes(tk, TaskSplit::kTrain, spec_.train_examples, spec_.seed, spec_.sft_wrong_share));
  std::vector<SftRecord> records;
  int64_t wrong = 0;
  for (TaskExample& e : ex) {
    wrong += !tk.Verify(e.prompt, e.response);
    records.push_back({std::move(e.prompt), std::move(e.response), false});
  }
  RETURN_IF_ERROR(WriteSftJsonl(path, records));
  Log(absl::StrCat("sft data for ", task, ": ", wrong, " of ", records.size(), " answers wrong (the weak source)"));
  return path;
}

// The fine-tuned model of a regime: "sft" (full SFT of the base) or
// "sft_dpo" (full DPO of the SFT model).
StatusOr<std::string> Study::RegimeRun(const std::string& task, const std::string& regime) {
  const std::string sft_name = FtSftRun(task);
  JobSpec sft = MakeJob(sft_name, base_dir_, task);
  sft.sft = *spec_.sft;
  ASSIGN_OR_RETURN(sft.sft->data, SftData(task));
  RETURN_IF_ERROR(RunCached(sft_name, sft).status());
  if (regime == "sft") return sft_name;
  return DpoRounds(task, FtDpoPrefix(task), sft_name, spec_.dpo->train, false);
}

// spec_.dpo_rounds DPO runs from the model of `sft_run`, each from the one
// before (its reference too) on pairs made from it, training as `train`;
// named by DpoRunName. Returns the last. With `continue_adapter` (LoRA) each
// round is a job over the base that continues the adapter of the run before,
// so that every round's model is the base plus one adapter of the same bytes.
// A model that answers every on-policy prompt right gives DPO no pair: the
// rounds stop there and it is the result (DpoRoundsFrom counts them).
StatusOr<std::string> Study::DpoRounds(const std::string& task, const std::string& prefix, const std::string& sft_run,
                                       const TrainStageSpec& train, bool continue_adapter) {
  std::string previous = sft_run;
  for (int64_t round = 1; round <= spec_.dpo_rounds; ++round) {
    const std::string name = DpoRunName(prefix, round);
    JobSpec dpo = MakeJob(name, continue_adapter ? base_dir_ : ModelOf(previous), task);
    dpo.dpo = *spec_.dpo;
    dpo.dpo->train = train;
    if (continue_adapter) dpo.dpo->train.lora.init = JoinPath(JoinPath(RunsDir(), previous), "adapter");
    ASSIGN_OR_RETURN(std::optional<std::string> data, DpoPairs(task, previous));
    if (!data) break;
    dpo.dpo->train.data = *data;
    RETURN_IF_ERROR(RunCached(name, dpo).status());
    previous = name;
  }
  return previous;
}

int64_t Study::DpoRoundsFrom(const std::string& prefix, const std::string& sft_run) const {
  int64_t rounds = 0;
  for (std::string run = sft_run; rounds < spec_.dpo_rounds && !PathExists(NoPairsMarker(run));) {
    run = DpoRunName(prefix, ++rounds);
  }
  return rounds;
}

// A training stage as LoRA of `rank`: the spec's alpha, its learning rate
// scaled by `lr_scale` (lora_lr_scale, or the spec's LoraDpoLrScale() for DPO).
TrainStageSpec Study::LoraStage(const TrainStageSpec& stage, int64_t rank, double lr_scale) const {
  TrainStageSpec s = stage;
  s.lora.rank = rank;
  s.lora.alpha = spec_.lora_alpha;
  s.loop.optim.lr *= lr_scale;
  return s;
}

// Names LoRA runs: "lora<rank>", with the learning-rate scale when not 1.
std::string Study::LoraTag(int64_t rank) const {
  if (spec_.lora_lr_scale == 1.0) return absl::StrCat("lora", rank);
  return absl::StrCat("lora", rank, "-lrx", RatioTag(spec_.lora_lr_scale));
}

// "-dpolrx<scale>" when LoRA's DPO rate is scaled apart from its SFT rate, so
// that such DPO runs never share a cached run with the default's.
std::string Study::LoraDpoTag() const {
  if (spec_.LoraDpoLrScale() == spec_.lora_lr_scale) return "";
  return absl::StrCat("-dpolrx", RatioTag(spec_.LoraDpoLrScale()));
}

// LoRA of `rank` trained by SFT (and then, for "sft_dpo", the same adapter
// trained on by DPO: one adapter's bytes, as a pack's).
StatusOr<std::string> Study::LoraRun(const std::string& task, const std::string& regime, int64_t rank) {
  const std::string sft_name = LoraSftRun(task, rank);
  JobSpec sft = MakeJob(sft_name, base_dir_, task);
  sft.sft = LoraStage(*spec_.sft, rank, spec_.lora_lr_scale);
  ASSIGN_OR_RETURN(sft.sft->data, SftData(task));
  RETURN_IF_ERROR(RunCached(sft_name, sft).status());
  if (regime == "sft") return sft_name;
  return DpoRounds(task, LoraDpoPrefix(task, rank), sft_name, LoraStage(spec_.dpo->train, rank, spec_.LoraDpoLrScale()),
                   true);
}

StatusOr<std::vector<TokenizedSequence>> Study::TrainSequences(const std::string& task, int64_t n,
                                                               int64_t max_seq_len) const {
  ASSIGN_OR_RETURN(std::vector<TaskExample> ex,
                   GenerateTaskExamples(*tasks_.at(task), TaskSplit::kTrain, n, spec_.seed, false));
  SequenceEncoder enc(*tok_, end_id_, max_seq_len);
  std::vector<TokenizedSequence> seqs;
  for (const TaskExample& e : ex) {
    ASSIGN_OR_RETURN(TokenizedSequence s, enc.Encode(e.prompt, e.response, false));
    seqs.push_back(std::move(s));
  }
  return seqs;
}

// The pack of `task`'s `regime` model at `ratio` (budget mode, calibrated on
// the tuned model as the compress stage does) and base + pack's accuracy.
StatusOr<Json> Study::Pack(const std::string& task, const std::string& regime, double ratio) {
  const std::string name = absl::StrCat(task, "-", regime, "-", RatioTag(ratio));
  const std::string cache = JoinPath(PacksDir(), name + ".json");
  if (PathExists(cache) && PathExists(JoinPath(PacksDir(), name + ".skillpack"))) {
    StatusOr<Json> r = ReadJsonFile(cache);
    if (r.ok() && r->value("run", "") == ExpectedRegimeRun(task, regime) &&
        r->value("refit", Json::object()).value("spec", "") == RefitKey()) {
      return r;
    }
  }
  ASSIGN_OR_RETURN(std::string run, RegimeRun(task, regime));
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> tuned, LoadWeights(ModelOf(run)));
  Log(absl::StrCat("pack ", name));
  std::unique_ptr<CalibrationStats> calib;
  if (spec_.calibration_samples > 0) {
    ASSIGN_OR_RETURN(std::vector<TokenizedSequence> seqs,
                     TrainSequences(task, spec_.calibration_samples, spec_.sft->max_seq_len));
    std::vector<std::vector<int32_t>> tokens;
    for (TokenizedSequence& s : seqs) tokens.push_back(std::move(s.tokens));
    ASSIGN_OR_RETURN(CalibrationStats stats, CaptureCalibration(*tuned, tokens));
    calib = std::make_unique<CalibrationStats>(std::move(stats));
  }
  CompressStageSpec cs;
  cs.pack_name = name;
  cs.config = spec_.compress_config;
  cs.config["target_ratio"] = ratio;
  cs.calib_samples = spec_.calibration_samples;
  cs.description = absl::StrCat("fidelity study: ", task, " (", regime, ") at ", RatioLabel(ratio));
  JobSpec job = MakeJob(name, base_dir_, task);
  job.sft = *spec_.sft;
  if (regime == "sft_dpo") job.dpo = spec_.dpo;
  PackRefitFn refit;
  if (spec_.refit) {
    cs.refit = spec_.refit;
    refit = [&](const SkillPack& pack) -> StatusOr<RefitResult> {
      ASSIGN_OR_RETURN(std::vector<TokenizedSequence> seqs,
                       TrainSequences(task, spec_.train_examples, spec_.refit->max_seq_len));
      LoopConfig loop = spec_.refit->loop;
      loop.seed = spec_.seed;
      auto run_loop = [&](TrainableWeights& tw, TrainingObjective& objective) -> StatusOr<Json> {
        ASSIGN_OR_RETURN(LoopResult lr, RunTrainingLoop(tw, objective, loop, nullptr));
        return LoopReport(lr, loop, tw);
      };
      return RefitPack(pack, base_->weights, tuned, *base_->transformer, std::move(seqs), run_loop,
                       spec_.refit_skip_below_kl);
    };
  }
  const Clock::time_point t = Clock::now();
  StatusOr<CompressStageResult> packed =
      RunCompressStage(cs, *base_->weights, *tuned, job, PacksDir(), calib.get(), refit);
  if (!packed.ok()) return Annotate(packed.status(), absl::StrCat("fidelity pack ", name));
  const double seconds = std::chrono::duration<double>(Clock::now() - t).count();
  ASSIGN_OR_RETURN(double acc, Evaluate(packed->composed, task));
  Json r;
  r["name"] = name;
  r["ratio"] = ratio;
  r["target_bytes"] = static_cast<int64_t>(std::floor(ratio * static_cast<double>(fp16_delta_bytes_)));
  r["file_bytes"] = packed->report["file_bytes"];
  r["fp16_delta_bytes"] = packed->report["fp16_delta_bytes"];
  r["file_ratio"] = packed->report["file_ratio"];
  r["modules"] = packed->report["modules"];
  r["relative_error"] = packed->report.value("relative_error", 0.0);
  r["quantizer"] = packed->report["quantizer"];
  r["compress_seconds"] = seconds;
  if (packed->report.contains("refit")) {
    r["refit"] = packed->report["refit"];
    r["refit"]["spec"] = RefitKey();
  }
  r["accuracy"] = acc;
  r["path"] = packed->report["path"];
  r["run"] = run;
  RETURN_IF_ERROR(WriteFileAtomically(cache, r.dump(2)));
  return r;
}

// Accuracy of base + the pack at `path` with its low-rank factors decoded in
// `precision`, composed from those factors (what factorized serving computes,
// ComposerTest.FactorizedStepMatchesMergedWeights).
StatusOr<double> Study::ServedAccuracy(const std::string& path, const std::string& task, FactorPrecision precision) {
  ASSIGN_OR_RETURN(SkillPack pack, ReadSkillPack(path));
  ASSIGN_OR_RETURN(DecodedPack d, DecodePack(pack, /*keep_factors=*/true, precision));
  PackSelection sel;
  sel.name = d.name;
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> w, ComposeWeights(*base_->weights, {sel}, {&d}));
  return Evaluate(w, task);
}

StatusOr<const DecodedPack*> Study::Decoded(const std::string& task, double ratio) {
  ASSIGN_OR_RETURN(Json info, Pack(task, "sft", ratio));
  const std::string name = info["name"].get<std::string>();
  auto it = decoded_.find(name);
  if (it != decoded_.end()) return it->second.get();
  ASSIGN_OR_RETURN(SkillPack pack, ReadSkillPack(info["path"].get<std::string>()));
  ASSIGN_OR_RETURN(DecodedPack d, DecodePack(pack, /*keep_factors=*/false));
  auto owned = std::make_unique<DecodedPack>(std::move(d));
  const DecodedPack* ptr = owned.get();
  decoded_[name] = std::move(owned);
  return ptr;
}

// The router's label for each prompt under the default policy (top-1 with
// its threshold): a task name or "none".
StatusOr<std::vector<std::string>> Study::Route(const std::vector<std::string>& prompts) {
  return Route(prompts, *router_);
}

StatusOr<std::vector<std::string>> Study::Route(const std::vector<std::string>& prompts, const Router& router) {
  std::vector<std::vector<int32_t>> ids;
  for (const std::string& p : prompts) ids.push_back(tok_->Encode(p, true, tok_->bos_id().has_value()));
  ASSIGN_OR_RETURN(at::Tensor features, router.Features(*base_->transformer, *base_->weights, ids, &prompts));
  at::Tensor scores = router.Scores(features).contiguous();
  const std::vector<std::string>& labels = router.config().labels;
  std::vector<std::string> out;
  const RoutingPolicy policy;
  for (int64_t i = 0; i < scores.size(0); ++i) {
    at::Tensor row = scores[i].to(at::kFloat).contiguous();
    std::vector<float> v(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
    RouteDecision d = DecideRoute(v, labels, policy);
    out.push_back(d.packs.empty() ? kRouterNoneLabel : d.packs[0].first);
  }
  return out;
}

// Accuracy on `task`'s held-out prompts when the router picks, per prompt,
// one pack among `ratio_of`'s tasks (their SFT packs at the given ratio) or
// none (base).
StatusOr<double> Study::RoutedAccuracy(const std::string& task, const std::map<std::string, double>& ratio_of) {
  const std::vector<TaskExample>& ex = held_out_.at(task);
  std::vector<std::string> prompts;
  for (const TaskExample& e : ex) prompts.push_back(e.prompt);
  ASSIGN_OR_RETURN(std::vector<std::string> labels, Route(prompts));
  std::map<std::string, std::vector<TaskExample>> groups;
  for (size_t i = 0; i < ex.size(); ++i) {
    const std::string& l = ratio_of.count(labels[i]) ? labels[i] : std::string(kRouterNoneLabel);
    groups[l].push_back(ex[i]);
  }
  int64_t correct = 0;
  for (const auto& [label, group] : groups) {
    std::shared_ptr<const ModelWeights> w = base_->weights;
    if (label != kRouterNoneLabel) {
      const double ratio = ratio_of.at(label);
      const std::string key = absl::StrCat(label, "@", RatioTag(ratio));
      if (!composed_.count(key)) {
        ASSIGN_OR_RETURN(const DecodedPack* d, Decoded(label, ratio));
        PackSelection sel;
        sel.name = d->name;
        ASSIGN_OR_RETURN(composed_[key], ComposeWeights(*base_->weights, {sel}, {d}));
      }
      w = composed_[key];
    }
    ASSIGN_OR_RETURN(TaskEvalResult r, EvaluateTask(*base_->transformer, w, *tok_, *tasks_.at(task), group));
    correct += r.correct;
  }
  return static_cast<double>(correct) / static_cast<double>(ex.size());
}

StatusOr<Json> Study::Table1() {
  Json t;
  t["ratios"] = spec_.ratios;
  t["fp16_delta_bytes"] = fp16_delta_bytes_;
  t["lora_bytes_per_rank"] = lora_bytes_per_rank_;
  t["dpo_rounds"] = spec_.dpo_rounds;
  // LoRA's learning rates as multiples of full fine-tuning's, per stage.
  t["lora_lr_scale"] = {{"sft", spec_.lora_lr_scale}};
  if (spec_.dpo) t["lora_lr_scale"]["dpo"] = spec_.LoraDpoLrScale();
  t["refit_steps"] = RefitSteps();
  t["refit_skip_below_kl"] = spec_.refit_skip_below_kl;
  t["sft_wrong_share"] = spec_.sft_wrong_share;
  std::vector<std::string> regimes = {"sft"};
  if (spec_.dpo) regimes.push_back("sft_dpo");
  t["regimes"] = regimes;
  for (const std::string& task : spec_.tasks) {
    for (const std::string& regime : regimes) {
      Json r;
      ASSIGN_OR_RETURN(std::string ft_run, RegimeRun(task, regime));
      ASSIGN_OR_RETURN(Json sft_report, Report(FtSftRun(task)));
      ASSIGN_OR_RETURN(Json ft_report, Report(ft_run));
      const double base = sft_report["eval"]["before"]["accuracy"].get<double>();
      const double ft = ft_report["eval"]["after"]["accuracy"].get<double>();
      r["base"] = base;
      r["full_ft"] = ft;
      if (regime == "sft_dpo") {
        r["full_ft_dpo_rounds_trained"] = DpoRoundsFrom(FtDpoPrefix(task), FtSftRun(task));
      }
      r["packs"] = Json::array();
      r["lora"] = Json::array();
      for (double ratio : spec_.ratios) {
        ASSIGN_OR_RETURN(Json p, Pack(task, regime, ratio));
        p["gain_kept"] = GainKept(p["accuracy"].get<double>(), base, ft);
        for (FactorPrecision prec : spec_.served_factor_precisions) {
          ASSIGN_OR_RETURN(double acc, ServedAccuracy(p["path"].get<std::string>(), task, prec));
          p["served"][FactorPrecisionName(prec)] = {{"accuracy", acc}, {"gain_kept", GainKept(acc, base, ft)}};
        }
        r["packs"].push_back(p);
        const int64_t target = static_cast<int64_t>(std::floor(ratio * static_cast<double>(fp16_delta_bytes_)));
        const int64_t rank = LoraRankForBytes(target, lora_bytes_per_rank_);
        ASSIGN_OR_RETURN(std::string lora_run, LoraRun(task, regime, rank));
        ASSIGN_OR_RETURN(Json lr, Report(lora_run));
        Json l;
        l["ratio"] = ratio;
        l["target_bytes"] = target;
        l["rank"] = rank;
        // SFT->DPO goes on training the SFT adapter: one adapter either way.
        l["bytes"] = rank * lora_bytes_per_rank_;
        l["accuracy"] = lr["eval"]["after"]["accuracy"].get<double>();
        l["gain_kept"] = GainKept(l["accuracy"].get<double>(), base, ft);
        if (regime == "sft_dpo") {
          l["dpo_rounds_trained"] = DpoRoundsFrom(LoraDpoPrefix(task, rank), LoraSftRun(task, rank));
        }
        r["lora"].push_back(l);
      }
      t["tasks"][task][regime] = r;
      Log(absl::StrFormat("table 1: %s %s base %.3f full FT %.3f", task, regime, base, ft));
    }
  }
  return t;
}

std::vector<std::vector<std::string>> Study::HeldOutGeneralPrompts() const {
  std::vector<std::vector<std::string>> out;
  for (const HeldOutSet& h : kHeldOutSets) {
    out.push_back(GeneralPrompts(h.split, NumGeneralPrompts(h.split), spec_.seed + h.general_seed));
  }
  return out;
}

Status Study::LoadTable4Router(Json* t) {
  const FidelityRouterSpec& rs = *spec_.router;
  StatusOr<std::unique_ptr<Router>> loaded = Router::Load(rs.file);
  if (!loaded.ok()) return Annotate(loaded.status(), "spec.router.file");
  ASSIGN_OR_RETURN(std::string fingerprint, BaseFingerprint(*base_->weights));
  const std::set<std::string> tasks(spec_.tasks.begin(), spec_.tasks.end());
  RETURN_IF_ERROR(
      Annotate((*loaded)->CheckFits(base_->config, fingerprint, tasks), absl::StrCat("spec.router.file ", rs.file)));
  const std::vector<std::string>& labels = (*loaded)->config().labels;
  for (const std::string& task : spec_.tasks) {
    if (std::find(labels.begin(), labels.end(), task) == labels.end()) {
      return absl::InvalidArgumentError(absl::StrCat("spec.tasks: '", task, "' is not a label of spec.router.file ",
                                                     rs.file, " (labels: ", absl::StrJoin(labels, ", "), ")"));
    }
  }
  router_ = *std::move(loaded);
  Log(absl::StrCat("router: scoring ", rs.file, " (labels ", absl::StrJoin(labels, ", "), "), not trained here"));
  (*t)["router_file"] = rs.file;
  (*t)["labels"] = labels;
  return absl::OkStatus();
}

StatusOr<RouterTrainResult> Study::TrainTable4Router(const std::vector<std::vector<std::string>>& held_out_general,
                                                     Json* out) {
  const FidelityRouterSpec& rs = *spec_.router;
  Json& t = *out;
  // Training prompts, grouped by what made them (the task's raw format, a
  // template, a general opener) for the selection's grouped validation.
  // Raw task prompts are training-only in the selection unless the spec says
  // "validated": Table 4 meets no raw format the router has not seen, so a
  // fold holding a task's raw prompts out would score something it never measures.
  std::vector<LabelledPrompt> data, raw_prompts;
  const bool raw_training_only = rs.select && !rs.raw_prompts_validated;
  for (const std::string& task : spec_.tasks) {
    const Task& tk = *tasks_.at(task);
    ASSIGN_OR_RETURN(std::vector<TaskExample> raw,
                     GenerateTaskExamples(tk, TaskSplit::kTrain, rs.examples_per_task, spec_.seed + 21, false));
    for (const TaskExample& e : raw) {
      (raw_training_only ? raw_prompts : data).push_back({e.prompt, task, absl::StrCat(task, ":raw")});
    }
    ASSIGN_OR_RETURN(std::vector<ParaphrasedExample> para,
                     GenerateParaphrases(tk, TaskSplit::kTrain, TemplateSplit::kTrain, rs.examples_per_task,
                                         spec_.seed + 22, rs.extra_templates));
    for (const ParaphrasedExample& p : para) {
      data.push_back({p.text, task, absl::StrCat(task, ":t", p.template_index)});
    }
    if (rs.composed_per_task > 0) {
      ASSIGN_OR_RETURN(std::vector<ParaphrasedExample> composed,
                       GenerateComposedParaphrases(tk, TaskSplit::kTrain, rs.composed_per_task, spec_.seed + 25));
      for (const ParaphrasedExample& p : composed) {
        data.push_back({p.text, task, absl::StrCat(task, ":c", p.template_index)});
      }
    }
    if (rs.context_per_task > 0) {
      // A core's context phrasings are in its composed phrasings' group.
      ASSIGN_OR_RETURN(std::vector<ParaphrasedExample> contexts,
                       GenerateComposedParaphrases(tk, TaskSplit::kTrain, rs.context_per_task, spec_.seed + 29, true));
      for (const ParaphrasedExample& p : contexts) {
        data.push_back({p.text, task, absl::StrCat(task, ":c", p.template_index)});
      }
    }
  }
  for (const GeneralPrompt& g : ComposedGeneralPrompts(rs.composed_general, spec_.seed + 26)) {
    data.push_back({g.text, kRouterNoneLabel,
                    rs.general_groups_by_topic ? absl::StrCat("none:c", g.opener, "|none:t", g.topic)
                                               : absl::StrCat("none:c", g.opener)});
  }
  Json corpus_topics;
  std::vector<std::string> words;  // the corpus topic words, where the spec has them
  if (!rs.composed_topic_corpus.empty()) {
    ASSIGN_OR_RETURN(std::vector<CorpusDocument> docs, ReadCorpus(rs.composed_topic_corpus));
    std::vector<std::string> texts;
    for (CorpusDocument& d : docs) texts.push_back(std::move(d.text));
    words = CorpusTopicWords(texts, rs.composed_topic_words, spec_.seed + 27);
    if (words.empty()) {
      return absl::InvalidArgumentError("spec.router.composed.corpus_topics: the corpus has no usable topic word");
    }
    for (const GeneralPrompt& g : ComposedGeneralPrompts(rs.composed_corpus_general, spec_.seed + 28, words)) {
      data.push_back({g.text, kRouterNoneLabel, absl::StrCat("none:c", g.opener, "|none:w", g.topic)});
    }
    const std::vector<std::string> first_words(words.begin(), words.begin() + std::min<size_t>(words.size(), 40));
    corpus_topics = {{"paths", rs.composed_topic_corpus},
                     {"words", words.size()},
                     {"prompts", rs.composed_corpus_general},
                     {"first_words", first_words}};
    Log(absl::StrCat("router: ", rs.composed_corpus_general, " composed general prompts over ", words.size(),
                     " corpus topic words (", absl::StrJoin(first_words, ", "), ", ...)"));
  }
  if (rs.made_up_general > 0) {
    const std::vector<std::string> made_up = MadeUpTopicWords(rs.made_up_topic_words, spec_.seed + 31);
    for (const GeneralPrompt& g : ComposedGeneralPrompts(rs.made_up_general, spec_.seed + 32, made_up)) {
      data.push_back({g.text, kRouterNoneLabel, absl::StrCat("none:c", g.opener, "|none:m", g.topic)});
    }
    const std::vector<std::string> first(made_up.begin(), made_up.begin() + std::min<size_t>(made_up.size(), 12));
    Log(absl::StrCat("router: ", rs.made_up_general, " composed general prompts over ", made_up.size(),
                     " made-up topic words (", absl::StrJoin(first, ", "), ", ...)"));
  }
  if (rs.context_general > 0) {
    const bool over_words = !words.empty();
    for (const GeneralPrompt& g :
         ComposedGeneralPrompts(rs.context_general, spec_.seed + 30,
                                over_words ? words : GeneralTopics(TemplateSplit::kTrain, true), true)) {
      data.push_back({g.text, kRouterNoneLabel,
                      over_words                   ? absl::StrCat("none:c", g.opener, "|none:w", g.topic)
                      : rs.general_groups_by_topic ? absl::StrCat("none:c", g.opener, "|none:t", g.topic)
                                                   : absl::StrCat("none:c", g.opener)});
    }
    Log(absl::StrCat("router: ", rs.context_per_task, " context phrasings per task and ", rs.context_general,
                     " context general prompts over ", over_words ? "the corpus topic words" : "the training topics"));
  }
  for (const GeneralPrompt& g :
       GeneralPromptsWithParts(TemplateSplit::kTrain, rs.general, spec_.seed + 23, rs.extra_general)) {
    data.push_back({g.text, kRouterNoneLabel,
                    rs.general_groups_by_topic ? absl::StrCat("none:o", g.opener, "|none:t", g.topic)
                                               : absl::StrCat("none:o", g.opener)});
  }
  // Corpus sentences as more none examples, grouped by document: the largest
  // amount's draw, each amount a prefix of it; none may equal an evaluation
  // prompt (checked: the held-out general prompts).
  std::vector<LabelledPrompt> corpus;
  std::vector<int64_t> amounts = {0};
  if (!rs.general_corpus.empty()) {
    amounts = rs.general_corpus_sentences;
    ASSIGN_OR_RETURN(std::vector<CorpusDocument> docs, ReadCorpus(rs.general_corpus));
    std::set<std::string> eval_general;
    for (const std::vector<std::string>& prompts : held_out_general) {
      for (const std::string& g : prompts) eval_general.insert(absl::AsciiStrToLower(g));
    }
    for (CorpusSentence& c : CorpusSentences(docs, amounts.back(), spec_.seed + 24)) {
      if (eval_general.count(absl::AsciiStrToLower(c.text)) > 0) continue;
      corpus.push_back({std::move(c.text), kRouterNoneLabel, absl::StrCat("none:c", c.document)});
    }
    if (corpus.empty() && amounts.back() > 0) {
      return absl::InvalidArgumentError("spec.router.general_corpus: the corpus has no usable sentence");
    }
    // Amounts beyond the corpus's sentences are all of them: one setting.
    for (int64_t& n : amounts) n = std::min<int64_t>(n, static_cast<int64_t>(corpus.size()));
    amounts.erase(std::unique(amounts.begin(), amounts.end()), amounts.end());
  }
  // Every amount is at most corpus.size() (capped above; {0} without a corpus).
  auto corpus_prefix = [&](int64_t n) { return std::vector<LabelledPrompt>(corpus.begin(), corpus.begin() + n); };
  int64_t corpus_used = amounts[0];
  RouterTrainOptions o = rs.train;
  o.seed = spec_.seed;
  if (rs.select) {
    // Corpus amounts x candidates (amount-major), every one validated on the
    // same prompts (the corpus sentences are training-only).
    std::vector<RouterCandidate> candidates;
    for (int64_t n : amounts) {
      for (const RouterCandidate& spec_candidate : rs.candidates) {
        RouterCandidate c = spec_candidate;
        c.options.seed = spec_.seed;
        c.extra = corpus_prefix(n);
        c.extra.insert(c.extra.end(), raw_prompts.begin(), raw_prompts.end());
        if (amounts.size() > 1) c.name = absl::StrCat(c.name, "+corpus", n);
        candidates.push_back(std::move(c));
      }
    }
    Log(absl::StrCat(
        "router: selecting among ", candidates.size(), " candidates (", rs.select->folds,
        "-fold grouped validation on ", data.size(), " training prompts",
        corpus.empty() ? "" : absl::StrCat(", corpus sentences training-only: ", absl::StrJoin(amounts, ", ")), ")"));
    RouterSelectOptions so = *rs.select;
    so.seed = spec_.seed;
    ASSIGN_OR_RETURN(RouterSelection sel,
                     SelectRouter(*base_->transformer, *base_->weights, *tok_, data, candidates, so));
    Json scores = Json::array();
    for (const RouterCvScore& c : sel.scores) {
      scores.push_back({{"candidate", c.candidate},
                        {"epochs", c.epochs},
                        {"balanced_accuracy", c.balanced_accuracy},
                        {"worst_label", c.worst_label},
                        {"validated", c.validated},
                        {"per_label", c.per_label}});
    }
    const RouterCvScore& best = sel.scores[sel.best];
    corpus_used = amounts[sel.best_candidate / rs.candidates.size()];
    Log(absl::StrFormat("router: chose %s at %d epochs (validation %.3f, worst label %.3f)", best.candidate,
                        best.epochs, best.balanced_accuracy, best.worst_label));
    t["selection"] = {{"folds", so.folds},
                      {"general_groups", rs.general_groups_by_topic ? "opener_topic" : "opener"},
                      {"raw_prompts", rs.raw_prompts_validated ? "validated" : "training_only"},
                      {"epochs", so.epochs},
                      {"scores", scores},
                      {"chosen", best.candidate},
                      {"chosen_epochs", best.epochs},
                      {"validation", best.balanced_accuracy}};
    o = sel.best_options;
    o.holdout_fraction = 0;  // the chosen options train on every training prompt
  }
  if (!rs.general_corpus.empty()) {
    t["general_corpus"] = {{"paths", rs.general_corpus}, {"sentences", corpus_used}, {"amounts", amounts}};
    Log(absl::StrCat("router: ", corpus_used, " corpus sentences as none examples"));
  }
  for (LabelledPrompt& p : corpus_prefix(corpus_used)) data.push_back(std::move(p));
  for (LabelledPrompt& p : raw_prompts) data.push_back(std::move(p));
  o.ensemble = rs.ensemble;
  Log(absl::StrCat("router: training on ", data.size(), " prompts",
                   o.ensemble > 1 ? absl::StrCat(", an ensemble of ", o.ensemble, " MLPs") : ""));
  ASSIGN_OR_RETURN(o.base_fingerprint, BaseFingerprint(*base_->weights));
  ASSIGN_OR_RETURN(RouterTrainResult trained, TrainRouter(*base_->transformer, *base_->weights, *tok_, data, o));
  RETURN_IF_ERROR(trained.router->Save(JoinPath(opts_.out_dir, "router.safetensors")));
  t["train_prompts"] = static_cast<int64_t>(data.size());
  t["train_accuracy"] = trained.train_accuracy;
  if (trained.holdout_examples > 0) t["internal_holdout_accuracy"] = trained.holdout_accuracy;
  t["options"] = {{"width", o.width},
                  {"epochs", o.epochs},
                  {"lr", o.learning_rate},
                  {"weight_decay", o.weight_decay},
                  {"dropout", o.dropout},
                  {"ensemble", o.ensemble},
                  {"augment",
                   {{"copies", o.augment.copies},
                    {"word_dropout", o.augment.word_dropout},
                    {"filler", o.augment.filler},
                    {"case_change", o.augment.case_change}}},
                  {"extra_templates", rs.extra_templates},
                  {"extra_general", rs.extra_general},
                  {"composed", {{"per_task", rs.composed_per_task}, {"general", rs.composed_general}}}};
  if (!corpus_topics.is_null()) t["options"]["composed"]["corpus_topics"] = corpus_topics;
  if (rs.context_per_task > 0 || rs.context_general > 0) {
    t["options"]["composed"]["contexts"] = {{"per_task", rs.context_per_task}, {"general", rs.context_general}};
  }
  if (rs.made_up_general > 0) {
    t["options"]["composed"]["made_up_topics"] = {{"words", rs.made_up_topic_words}, {"prompts", rs.made_up_general}};
  }
  return trained;
}

StatusOr<Json> Study::Table4() {
  const FidelityRouterSpec& rs = *spec_.router;
  Json t;
  // Each held-out set's general prompts: evaluated below, and kept out of a
  // trained router's corpus sentences.
  const std::vector<std::vector<std::string>> held_out_general = HeldOutGeneralPrompts();
  RouterTrainResult trained;  // only when trained here
  if (rs.file.empty()) {
    ASSIGN_OR_RETURN(trained, TrainTable4Router(held_out_general, &t));
    router_ = std::move(trained.router);
  } else {
    RETURN_IF_ERROR(LoadTable4Router(&t));
  }

  // Evaluation sets: (category, expected label, prompt).
  std::vector<RoutingCase> cases;
  for (const std::string& task : spec_.tasks) {
    const Task& tk = *tasks_.at(task);
    ASSIGN_OR_RETURN(std::vector<TaskExample> raw,
                     GenerateTaskExamples(tk, TaskSplit::kHeldOut, rs.eval_per_task, spec_.seed + 31, false));
    for (const TaskExample& e : raw) cases.push_back({"task_prompts", task, e.prompt});
    ASSIGN_OR_RETURN(std::vector<ParaphrasedExample> seen,
                     GenerateParaphrases(tk, TaskSplit::kHeldOut, TemplateSplit::kTrain, rs.eval_per_task,
                                         spec_.seed + 32, rs.extra_templates));
    for (const ParaphrasedExample& p : seen) cases.push_back({"paraphrases_train_templates", task, p.text});
    for (const HeldOutSet& h : kHeldOutSets) {
      ASSIGN_OR_RETURN(
          std::vector<ParaphrasedExample> unseen,
          GenerateParaphrases(tk, TaskSplit::kHeldOut, h.split, rs.eval_per_task, spec_.seed + h.templates_seed));
      const std::string category = absl::StrCat("paraphrases_", TemplateSplitName(h.split), "_templates");
      for (const ParaphrasedExample& p : unseen) cases.push_back({category, task, p.text});
    }
  }
  for (size_t i = 0; i < std::size(kHeldOutSets); ++i) {
    const std::string category = absl::StrCat("general_", TemplateSplitName(kHeldOutSets[i].split));
    for (const std::string& g : held_out_general[i]) cases.push_back({category, kRouterNoneLabel, g});
  }
  std::vector<std::string> prompts;
  for (const RoutingCase& c : cases) prompts.push_back(c.prompt);
  ASSIGN_OR_RETURN(std::vector<std::string> got, Route(prompts));
  ASSIGN_OR_RETURN(Json scored, ScoreRouting(cases, got, kMisroutedListed));
  t["categories"] = scored["categories"];
  t["misrouted_examples"] = scored["misrouted_examples"];
  if (!trained.members.empty()) {
    // Member 0 alone is the router an ensemble of one trains: both measured
    // on the same prompts in one run.
    ASSIGN_OR_RETURN(std::vector<std::string> single, Route(prompts, *trained.members[0]));
    ASSIGN_OR_RETURN(Json first, ScoreRouting(cases, single, kMisroutedListed));
    t["first_member"] = {{"categories", first["categories"]}, {"misrouted_examples", first["misrouted_examples"]}};
  }
  t["policy"] = "top1, threshold 0.5";
  t["layer"] = router_->config().layer;
  std::vector<std::string> pooling;
  for (Pooling p : router_->config().pooling) pooling.push_back(PoolingName(p));
  t["features"] = {{"layers", router_->config().layers}, {"pooling", pooling}};
  Json templates;
  std::vector<TemplateSplit> splits = {TemplateSplit::kTrain};
  for (const HeldOutSet& h : kHeldOutSets) splits.push_back(h.split);
  for (const std::string& task : spec_.tasks) {
    for (TemplateSplit split : splits) {
      ASSIGN_OR_RETURN(templates[task][TemplateSplitName(split)], ParaphraseTemplates(task, split));
    }
  }
  t["templates"] = templates;
  return t;
}

StatusOr<Json> Study::Table2(const Json& table1) {
  const FidelityFusionSpec& fs = *spec_.fusion;
  Json t;
  t["ratio"] = fs.ratio;
  t["tasks"] = spec_.tasks;
  auto row = [&](const std::string& method, const std::map<std::string, double>& acc) {
    Json r;
    r["method"] = method;
    double sum = 0;
    for (const auto& [task, a] : acc) {
      r["accuracy"][task] = a;
      sum += a;
    }
    r["mean"] = sum / static_cast<double>(acc.size());
    return r;
  };
  std::map<std::string, double> base, own, routed;
  std::map<std::string, double> ratio_of;
  for (const std::string& task : spec_.tasks) ratio_of[task] = fs.ratio;
  for (const std::string& task : spec_.tasks) {
    base[task] = table1["tasks"][task]["sft"]["base"].get<double>();
    ASSIGN_OR_RETURN(Json p, Pack(task, "sft", fs.ratio));
    own[task] = p["accuracy"].get<double>();
    ASSIGN_OR_RETURN(routed[task], RoutedAccuracy(task, ratio_of));
  }
  t["rows"] = Json::array();
  t["rows"].push_back(row("base", base));
  t["rows"].push_back(row("routed_packs", routed));
  t["rows"].push_back(row("own_pack_explicit", own));
  std::vector<const DecodedPack*> packs;
  for (const std::string& task : spec_.tasks) {
    ASSIGN_OR_RETURN(const DecodedPack* d, Decoded(task, fs.ratio));
    packs.push_back(d);
  }
  for (const char* method : {"ta", "ties", "dare"}) {
    MergeOptions mo;
    ASSIGN_OR_RETURN(mo.method, ParseMergeMethod(method));
    mo.lambda = fs.lambda;
    mo.density = fs.ties_density;
    mo.drop = fs.dare_drop;
    mo.seed = spec_.seed;
    Log(absl::StrCat("merge ", method));
    ASSIGN_OR_RETURN(auto merged, MergePacks(packs, mo));
    DecodedPack m;
    m.name = absl::StrCat("merged-", method);
    m.base_fingerprint = packs[0]->base_fingerprint;
    for (auto& [name, delta] : merged) {
      DecodedModule dm;
      dm.name = name;
      dm.delta = delta;
      m.modules[name] = std::move(dm);
    }
    PackSelection sel;
    sel.name = m.name;
    ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> w, ComposeWeights(*base_->weights, {sel}, {&m}));
    std::map<std::string, double> acc;
    for (const std::string& task : spec_.tasks) {
      ASSIGN_OR_RETURN(acc[task], Evaluate(w, task));
    }
    t["rows"].push_back(row(method, acc));
  }
  t["merge"] = {{"lambda", fs.lambda}, {"ties_density", fs.ties_density}, {"dare_drop", fs.dare_drop}};
  // One full fine-tune on every task's training examples, shuffled together.
  const std::string mt_name = "multitask-ft-sft";
  const std::string data_path = JoinPath(RunsDir(), "multitask-train.jsonl");
  std::vector<SftRecord> records;
  const int64_t per_task = std::max<int64_t>(1, spec_.train_examples / static_cast<int64_t>(spec_.tasks.size()));
  for (const std::string& task : spec_.tasks) {
    ASSIGN_OR_RETURN(std::vector<TaskExample> ex,
                     GenerateTaskExamples(*tasks_.at(task), TaskSplit::kTrain, per_task, spec_.seed, false));
    for (TaskExample& e : ex) records.push_back({std::move(e.prompt), std::move(e.response), false});
  }
  std::mt19937_64 rng(spec_.seed);
  std::shuffle(records.begin(), records.end(), rng);
  RETURN_IF_ERROR(WriteSftJsonl(data_path, records));
  JobSpec mt = MakeJob(mt_name, base_dir_, "");
  mt.sft = *spec_.sft;
  mt.sft->data = data_path;
  mt.sft->loop.steps =
      fs.multitask_steps > 0 ? fs.multitask_steps : spec_.sft->loop.steps * static_cast<int64_t>(spec_.tasks.size());
  RETURN_IF_ERROR(RunCached(mt_name, mt).status());
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> mtw, LoadWeights(ModelOf(mt_name)));
  std::map<std::string, double> mt_acc;
  for (const std::string& task : spec_.tasks) {
    ASSIGN_OR_RETURN(mt_acc[task], Evaluate(mtw, task));
  }
  t["rows"].push_back(row("multitask_ft", mt_acc));
  t["multitask_steps"] = mt.sft->loop.steps;
  return t;
}

StatusOr<Json> Study::Table3(const Json& table1) {
  const FidelityContinualSpec& cs = *spec_.continual;
  const std::string& a = cs.task_a;
  const std::string& b = cs.task_b;
  Json t;
  t["task_a"] = a;
  t["task_b"] = b;
  t["ratio"] = cs.ratio;
  t["rows"] = Json::array();
  auto row = [&](const std::string& method, double a_before, double a_after, double b_after) {
    return Json{{"method", method},
                {"a_before", a_before},
                {"a_after", a_after},
                {"forgetting", a_before - a_after},
                {"b_after", b_after}};
  };
  t["base"] = {{"a", table1["tasks"][a]["sft"]["base"]}, {"b", table1["tasks"][b]["sft"]["base"]}};
  // Sequential full fine-tuning: A's model, then SFT on B.
  {
    ASSIGN_OR_RETURN(std::string a_run, RegimeRun(a, "sft"));
    ASSIGN_OR_RETURN(Json a_report, Report(a_run));
    const std::string name = absl::StrCat(a, "-then-", b, "-ft-sft");
    JobSpec job = MakeJob(name, ModelOf(a_run), b);
    job.sft = *spec_.sft;
    ASSIGN_OR_RETURN(Json report, RunCached(name, job));
    ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> w, LoadWeights(ModelOf(name)));
    ASSIGN_OR_RETURN(double a_after, Evaluate(w, a));
    t["rows"].push_back(row("sequential_full_ft", a_report["eval"]["after"]["accuracy"].get<double>(), a_after,
                            report["eval"]["after"]["accuracy"].get<double>()));
  }
  // Sequential LoRA at the ratio's byte target: A's adapter merged, then a new one on B.
  const int64_t target = static_cast<int64_t>(std::floor(cs.ratio * static_cast<double>(fp16_delta_bytes_)));
  const int64_t rank = LoraRankForBytes(target, lora_bytes_per_rank_);
  t["lora_rank"] = rank;
  {
    ASSIGN_OR_RETURN(std::string a_run, LoraRun(a, "sft", rank));
    ASSIGN_OR_RETURN(Json a_report, Report(a_run));
    const std::string name = absl::StrCat(a, "-then-", b, "-", LoraTag(rank), "-sft");
    JobSpec job = MakeJob(name, ModelOf(a_run), b);
    job.sft = LoraStage(*spec_.sft, rank, spec_.lora_lr_scale);
    ASSIGN_OR_RETURN(Json report, RunCached(name, job));
    ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> w, LoadWeights(ModelOf(name)));
    ASSIGN_OR_RETURN(double a_after, Evaluate(w, a));
    t["rows"].push_back(row("sequential_lora", a_report["eval"]["after"]["accuracy"].get<double>(), a_after,
                            report["eval"]["after"]["accuracy"].get<double>()));
  }
  // Packs: A's pack alone, then A's and B's packs behind the router.
  {
    ASSIGN_OR_RETURN(Json pa, Pack(a, "sft", cs.ratio));
    ASSIGN_OR_RETURN(double a_after, RoutedAccuracy(a, {{a, cs.ratio}, {b, cs.ratio}}));
    ASSIGN_OR_RETURN(double b_after, RoutedAccuracy(b, {{a, cs.ratio}, {b, cs.ratio}}));
    t["rows"].push_back(row("packs_routed", pa["accuracy"].get<double>(), a_after, b_after));
  }
  return t;
}

Status Study::WritePlots(const Json& table1) {
  for (const std::string& task : spec_.tasks) {
    LinePlot plot;
    plot.title = absl::StrCat("Table 1: ", task, " — held-out exact match vs bytes");
    plot.x_label = "bytes / fp16 delta bytes";
    plot.y_label = "exact match";
    plot.log2_x = true;
    for (const auto& regime : table1["regimes"]) {
      const std::string rg = regime.get<std::string>();
      const Json& r = table1["tasks"][task][rg];
      const std::string suffix = rg == "sft" ? " (SFT)" : " (SFT→DPO)";
      PlotSeries packs{"pack" + suffix, {}, rg != "sft"};
      // LoRA at its ratio's byte target (its rank's bytes are within half a
      // rank of it; under SFT->DPO the same adapter, trained on: one adapter's bytes).
      PlotSeries lora{"LoRA" + suffix, {}, rg != "sft"};
      for (const Json& p : r["packs"]) packs.points.push_back({p["ratio"].get<double>(), p["accuracy"].get<double>()});
      for (const Json& l : r["lora"]) lora.points.push_back({l["ratio"].get<double>(), l["accuracy"].get<double>()});
      plot.series.push_back(packs);
      plot.series.push_back(lora);
      plot.hlines.push_back({"full FT" + suffix, r["full_ft"].get<double>()});
      if (rg == "sft") plot.hlines.push_back({"base", r["base"].get<double>()});
    }
    ASSIGN_OR_RETURN(std::string svg, RenderLinePlot(plot));
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(opts_.out_dir, absl::StrCat("table1_", task, ".svg")), svg));
  }
  return absl::OkStatus();
}

StatusOr<Json> Study::Run() {
  const double cpu0 = CpuSeconds();
  RETURN_IF_ERROR(MakeDirectories(opts_.out_dir));
  RETURN_IF_ERROR(Setup());
  Json result;
  result["name"] = spec_.name;
  result["spec"] = spec_.source;
  result["machine"] = opts_.machine;
  result["base_model"] = base_dir_;
  result["parameters"] = base_->config.NumParameters();
  result["threads"] = at::get_num_threads();
  result["held_out_per_task"] = spec_.held_out;
  if (spec_.tables.count(1)) {
    ASSIGN_OR_RETURN(result["table1"], Table1());
    RETURN_IF_ERROR(WritePlots(result["table1"]));
  }
  // Tables 2 and 3 route with Table 4's router.
  if (spec_.tables.count(4) || spec_.tables.count(2) || spec_.tables.count(3)) {
    ASSIGN_OR_RETURN(result["table4"], Table4());
  }
  if (spec_.tables.count(2)) {
    ASSIGN_OR_RETURN(result["table2"], Table2(result["table1"]));
  }
  if (spec_.tables.count(3)) {
    ASSIGN_OR_RETURN(result["table3"], Table3(result["table1"]));
  }
  result["wall_seconds"] = std::chrono::duration<double>(Clock::now() - start_).count();
  result["cpu_seconds"] = CpuSeconds() - cpu0;
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(opts_.out_dir, "fidelity.json"), result.dump(2)));
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(opts_.out_dir, "fidelity.md"), FidelityMarkdown(result)));
  Log(absl::StrFormat("done: %.0f s wall, %.0f s CPU", result["wall_seconds"].get<double>(),
                      result["cpu_seconds"].get<double>()));
  return result;
}

std::string Pct(const Json& v) {
  if (v.is_null()) return "n/a";
  return absl::StrFormat("%.0f%%", 100 * v.get<double>());
}
std::string Acc(const Json& v) { return absl::StrFormat("%.3f", v.get<double>()); }

// A Markdown table's header row and its rule: "| a | b |\n|---|---|\n".
std::string MarkdownHeader(const std::vector<std::string>& columns) {
  std::string header = "|", rule = "|";
  for (const std::string& c : columns) {
    absl::StrAppend(&header, " ", c, " |");
    rule += "---|";
  }
  return absl::StrCat(header, "\n", rule, "\n");
}

}  // namespace

StatusOr<Json> ScoreRouting(const std::vector<RoutingCase>& cases, const std::vector<std::string>& routed,
                            int64_t max_examples) {
  if (cases.size() != routed.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ScoreRouting: ", cases.size(), " cases but ", routed.size(), " routed labels"));
  }
  // category -> true label -> routed label -> count.
  std::map<std::string, std::map<std::string, std::map<std::string, int64_t>>> counts;
  Json examples = Json::array();
  std::map<std::string, int64_t> listed;  // misroutes listed per category
  for (size_t i = 0; i < cases.size(); ++i) {
    const RoutingCase& c = cases[i];
    if (c.category.empty() || c.label.empty() || routed[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("ScoreRouting: case ", i, " has an empty ",
                                                     c.category.empty() ? "category"
                                                     : c.label.empty()  ? "label"
                                                                        : "routed label"));
    }
    counts[c.category][c.label][routed[i]]++;
    if (routed[i] != c.label && listed[c.category] < max_examples) {
      ++listed[c.category];
      examples.push_back(
          {{"category", c.category}, {"prompt", c.prompt}, {"expected", c.label}, {"routed", routed[i]}});
    }
  }
  Json categories = Json::object();
  for (const auto& [category, by_label] : counts) {
    int64_t ok = 0, n = 0;
    Json per = Json::object(), confusion = Json::object();
    for (const auto& [label, by_routed] : by_label) {
      int64_t label_n = 0;
      for (const auto& [got, k] : by_routed) {
        confusion[label][got] = k;
        label_n += k;
      }
      const int64_t label_ok = by_routed.count(label) ? by_routed.at(label) : 0;
      per[label] = static_cast<double>(label_ok) / static_cast<double>(label_n);
      ok += label_ok;
      n += label_n;
    }
    categories[category] = {{"accuracy", static_cast<double>(ok) / static_cast<double>(n)},
                            {"n", n},
                            {"per_label", per},
                            {"confusion", confusion}};
  }
  return Json{{"categories", categories}, {"misrouted_examples", examples}};
}

std::string RoutingConfusionMarkdown(const Json& categories) {
  std::string md;
  for (const auto& [category, c] : categories.items()) {
    if (!c.contains("confusion")) continue;  // a report from before the confusion tables
    const Json& confusion = c["confusion"];
    std::set<std::string> columns;
    for (const auto& [label, by_routed] : confusion.items()) {
      columns.insert(label);
      for (const auto& [got, k] : by_routed.items()) columns.insert(got);
    }
    std::vector<std::string> header = {"true \\ routed"};
    header.insert(header.end(), columns.begin(), columns.end());
    header.push_back("n");
    absl::StrAppend(&md, "Confusion, ", category, " (rows: true label; columns: routed label; counts):\n\n",
                    MarkdownHeader(header));
    for (const auto& [label, by_routed] : confusion.items()) {
      absl::StrAppend(&md, "| ", label, " |");
      int64_t n = 0;
      for (const std::string& col : columns) {
        const int64_t k = by_routed.contains(col) ? by_routed[col].get<int64_t>() : 0;
        n += k;
        absl::StrAppend(&md, " ", col == label ? absl::StrCat("**", k, "**") : absl::StrCat(k), " |");
      }
      absl::StrAppend(&md, " ", n, " |\n");
    }
    absl::StrAppend(&md, "\n");
  }
  return md;
}

int64_t LoraBytesPerRank(const ModelWeights& base) {
  int64_t dims = 0;
  for (const auto& [name, t] : base.tensors()) {
    for (const std::string& suffix : LoraTargetSuffixes()) {
      if (absl::EndsWith(name, suffix) && t.dim() == 2) dims += t.size(0) + t.size(1);
    }
  }
  return 2 * dims;
}

int64_t LoraRankForBytes(int64_t target_bytes, int64_t bytes_per_rank) {
  const int64_t r = (target_bytes + bytes_per_rank / 2) / bytes_per_rank;
  return std::max<int64_t>(1, r);
}

namespace {

// spec.router's fields for a router trained here (all but eval_per_task,
// extra_templates and file) into *rs.
Status ReadTrainedRouterSpec(FieldReader& c, const std::string& base_dir, FidelityRouterSpec* rs) {
  RETURN_IF_ERROR(c.ReadInRange<int64_t>("examples_per_task", &rs->examples_per_task, 1, 1000000));
  RETURN_IF_ERROR(c.Read("extra_general", &rs->extra_general));
  RETURN_IF_ERROR(
      c.ReadInRange<int64_t>("general", &rs->general, 1, NumGeneralPrompts(TemplateSplit::kTrain, rs->extra_general)));
  if (c.Has("composed")) {
    FieldReader cc(c.Get("composed"), "spec.router.composed");
    RETURN_IF_ERROR(cc.CheckObject());
    RETURN_IF_ERROR(cc.ReadInRange<int64_t>("per_task", &rs->composed_per_task, 0, 1000000));
    RETURN_IF_ERROR(cc.ReadInRange<int64_t>("general", &rs->composed_general, 0, 1000000));
    if (cc.Has("corpus_topics")) {
      FieldReader ct(cc.Get("corpus_topics"), "spec.router.composed.corpus_topics");
      RETURN_IF_ERROR(ct.CheckObject());
      ASSIGN_OR_RETURN(rs->composed_topic_corpus,
                       ReadPathList(ct.Has("paths") ? ct.Get("paths") : Json(), ct.Path("paths"), base_dir));
      rs->composed_topic_words = 2000;
      rs->composed_corpus_general = 800;
      RETURN_IF_ERROR(ct.ReadInRange<int64_t>("words", &rs->composed_topic_words, 1, 1000000));
      RETURN_IF_ERROR(ct.ReadInRange<int64_t>("prompts", &rs->composed_corpus_general, 1, 1000000));
      RETURN_IF_ERROR(ct.Finish());
    }
    if (cc.Has("contexts")) {
      FieldReader cx(cc.Get("contexts"), "spec.router.composed.contexts");
      RETURN_IF_ERROR(cx.CheckObject());
      RETURN_IF_ERROR(cx.ReadInRange<int64_t>("per_task", &rs->context_per_task, 0, 1000000));
      RETURN_IF_ERROR(cx.ReadInRange<int64_t>("general", &rs->context_general, 0, 1000000));
      RETURN_IF_ERROR(cx.Finish());
    }
    if (cc.Has("made_up_topics")) {
      FieldReader mu(cc.Get("made_up_topics"), "spec.router.composed.made_up_topics");
      RETURN_IF_ERROR(mu.CheckObject());
      rs->made_up_topic_words = 1000;
      rs->made_up_general = 400;
      RETURN_IF_ERROR(mu.ReadInRange<int64_t>("words", &rs->made_up_topic_words, 1, 1000000));
      RETURN_IF_ERROR(mu.ReadInRange<int64_t>("prompts", &rs->made_up_general, 1, 1000000));
      RETURN_IF_ERROR(mu.Finish());
    }
    RETURN_IF_ERROR(cc.Finish());
  }
  if (c.Has("general_corpus")) {
    FieldReader gc(c.Get("general_corpus"), "spec.router.general_corpus");
    RETURN_IF_ERROR(gc.CheckObject());
    ASSIGN_OR_RETURN(rs->general_corpus,
                     ReadPathList(gc.Has("paths") ? gc.Get("paths") : Json(), gc.Path("paths"), base_dir));
    rs->general_corpus_sentences = {400};
    if (gc.Has("sentences") && gc.Get("sentences").is_array()) {
      ASSIGN_OR_RETURN(rs->general_corpus_sentences,
                       ReadAscendingIntList(gc.Get("sentences"), gc.Path("sentences"), 0, 1000000));
    } else {
      RETURN_IF_ERROR(gc.ReadInRange<int64_t>("sentences", &rs->general_corpus_sentences[0], 1, 1000000));
    }
    if (rs->general_corpus_sentences.size() > 1 && !c.Has("select")) {
      return absl::InvalidArgumentError(absl::StrCat(
          gc.Path("sentences"), ": several amounts need spec.router.select (validation chooses among them)"));
    }
    RETURN_IF_ERROR(gc.Finish());
  }
  RETURN_IF_ERROR(ReadRouterOptions(c, &rs->train));
  // The ensemble is the final router's; candidates inherit the rest.
  rs->ensemble = rs->train.ensemble;
  rs->train.ensemble = 1;
  RETURN_IF_ERROR(c.ReadInRange<double>("holdout", &rs->train.holdout_fraction, 0.0, 0.9));
  if (c.Has("select")) {
    FieldReader sc(c.Get("select"), "spec.router.select");
    RETURN_IF_ERROR(sc.CheckObject());
    RouterSelectOptions so;
    RETURN_IF_ERROR(sc.ReadInRange<int64_t>("folds", &so.folds, 2, 100));
    std::string general_groups = "opener_topic", raw_prompts = "training_only";
    RETURN_IF_ERROR(sc.ReadOneOf("general_groups", {"opener_topic", "opener"}, &general_groups));
    RETURN_IF_ERROR(sc.ReadOneOf("raw_prompts", {"training_only", "validated"}, &raw_prompts));
    rs->general_groups_by_topic = general_groups == "opener_topic";
    rs->raw_prompts_validated = raw_prompts == "validated";
    if (sc.Has("epochs")) {
      ASSIGN_OR_RETURN(so.epochs, ReadAscendingIntList(sc.Get("epochs"), "spec.router.select.epochs", 1, 1000000));
    }
    if (!sc.Has("candidates") || !sc.Get("candidates").is_array() || sc.Get("candidates").empty()) {
      return absl::InvalidArgumentError(
          "spec.router.select.candidates: a non-empty list of router option objects is required");
    }
    const Json& cands = sc.Get("candidates");
    std::set<std::string> names;
    for (size_t i = 0; i < cands.size(); ++i) {
      const std::string path = absl::StrCat("spec.router.select.candidates[", i, "]");
      FieldReader cc(cands[i], path);
      RETURN_IF_ERROR(cc.CheckObject());
      RouterCandidate cand;
      cand.name = absl::StrCat("c", i);
      RETURN_IF_ERROR(cc.Read("name", &cand.name));
      if (!names.insert(cand.name).second) {
        return absl::InvalidArgumentError(absl::StrCat(path, ".name: '", cand.name, "' is used twice"));
      }
      cand.options = rs->train;  // a candidate overrides the router's own options
      if (cc.Has("ensemble")) {
        return absl::InvalidArgumentError(
            absl::StrCat(path,
                         ".ensemble: set it on spec.router (the final router's members); candidates are "
                         "validated as one MLP each"));
      }
      RETURN_IF_ERROR(ReadRouterOptions(cc, &cand.options));
      RETURN_IF_ERROR(cc.Finish());
      rs->candidates.push_back(std::move(cand));
    }
    RETURN_IF_ERROR(sc.Finish());
    rs->select = so;
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<FidelitySpec> ParseFidelitySpec(const Json& j, const std::string& base_dir) {
  FidelitySpec s;
  s.source = j;
  FieldReader r(j, "spec");
  RETURN_IF_ERROR(r.CheckObject());
  RETURN_IF_ERROR(r.Read("name", &s.name));
  RETURN_IF_ERROR(r.Read("seed", &s.seed));
  RETURN_IF_ERROR(r.ReadInRange("threads", &s.threads, 0, 1024));
  if (!r.Has("tasks")) return absl::InvalidArgumentError("spec.tasks: missing (a list of task names)");
  {
    const Json& tasks = r.Get("tasks");
    if (!tasks.is_array()) return absl::InvalidArgumentError("spec.tasks must be a list of task names");
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (!tasks[i].is_string())
        return absl::InvalidArgumentError(absl::StrCat("spec.tasks[", i, "] must be a string"));
      s.tasks.push_back(tasks[i].get<std::string>());
    }
  }
  if (s.tasks.empty()) return absl::InvalidArgumentError("spec.tasks: at least one task is required");
  std::set<std::string> seen;
  for (size_t i = 0; i < s.tasks.size(); ++i) {
    StatusOr<std::unique_ptr<Task>> t = MakeTask(s.tasks[i]);
    if (!t.ok()) return Annotate(t.status(), absl::StrCat("spec.tasks[", i, "]"));
    if (!seen.insert(s.tasks[i]).second) {
      return absl::InvalidArgumentError(absl::StrCat("spec.tasks[", i, "]: '", s.tasks[i], "' is listed twice"));
    }
    RETURN_IF_ERROR(Annotate(ParaphraseTemplates(s.tasks[i]).status(), absl::StrCat("spec.tasks[", i, "]")));
  }
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("held_out", &s.held_out, 1, 100000));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("train_examples", &s.train_examples, 1, 10000000));
  if (r.Has("ratios")) {
    const Json& ratios = r.Get("ratios");
    if (!ratios.is_array()) return absl::InvalidArgumentError("spec.ratios must be a list of numbers");
    s.ratios.clear();
    for (size_t i = 0; i < ratios.size(); ++i) {
      if (!ratios[i].is_number())
        return absl::InvalidArgumentError(absl::StrCat("spec.ratios[", i, "] must be a number"));
      s.ratios.push_back(ratios[i].get<double>());
    }
    if (s.ratios.empty()) return absl::InvalidArgumentError("spec.ratios: at least one ratio is required");
    for (size_t i = 0; i < s.ratios.size(); ++i) {
      if (!(s.ratios[i] >= 1e-4 && s.ratios[i] <= 1.0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.ratios[", i, "] must be in [0.0001, 1], got ", s.ratios[i]));
      }
    }
  }
  RETURN_IF_ERROR(r.ReadInRange<double>("lora_alpha", &s.lora_alpha, 1e-6, 1e6));
  RETURN_IF_ERROR(r.ReadInRange<double>("lora_lr_scale", &s.lora_lr_scale, 1e-3, 1e3));
  if (r.Has("lora_dpo_lr_scale")) {
    double scale = 1.0;
    RETURN_IF_ERROR(r.ReadInRange<double>("lora_dpo_lr_scale", &scale, 1e-3, 1e3));
    s.lora_dpo_lr_scale = scale;
  }
  RETURN_IF_ERROR(r.ReadOneOf("dpo_pairs", {"verifier", "on_policy"}, &s.dpo_pairs));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("dpo_prompts", &s.dpo_prompts, 1, 1000000));
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("dpo_rounds", &s.dpo_rounds, 1, 10));
  RETURN_IF_ERROR(r.ReadInRange<double>("sft_wrong_share", &s.sft_wrong_share, 0.0, 0.9));
  // The base model, sft and dpo stages through the job parser (same fields, same checks).
  if (!r.Has("base_model"))
    return absl::InvalidArgumentError("spec.base_model: missing (a folder or {\"tiny\": {...}})");
  for (const char* stage : {"sft", "dpo"}) {
    if (r.Has(stage)) {
      const Json& st = r.Get(stage);
      if (st.is_object() && st.contains("data")) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.", stage, ".data: not allowed (the study trains on each task's generated examples)"));
      }
      if (st.is_object() && st.contains("lora")) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.", stage, ".lora: not allowed (LoRA ranks follow the byte targets; see lora_alpha)"));
      }
    }
  }
  if (r.Has("sft")) {
    Json job = {{"name", s.name},
                {"seed", s.seed},
                {"base_model", r.Get("base_model")},
                {"task", {{"name", s.tasks[0]}, {"held_out", s.held_out}, {"train_examples", s.train_examples}}},
                {"stages", {{"sft", r.Get("sft")}}}};
    if (r.Has("dpo")) job["stages"]["dpo"] = r.Get("dpo");
    StatusOr<JobSpec> parsed = ParseJobSpec(job, base_dir);
    if (!parsed.ok()) return AsSpecError(parsed.status());
    s.base_model_dir = parsed->base_model_dir;
    s.tiny_base = parsed->tiny_base;
    s.sft = parsed->sft;
    s.dpo = parsed->dpo;
  } else {
    // Table 4 alone fine-tunes nothing (checked with spec.tables below).
    if (r.Has("dpo")) return absl::InvalidArgumentError("spec.dpo: needs spec.sft (DPO starts from the SFT models)");
    JobSpec base;
    RETURN_IF_ERROR(AsSpecError(ParseJobBaseModel(r.Get("base_model"), base_dir, &base)));
    s.base_model_dir = base.base_model_dir;
    s.tiny_base = base.tiny_base;
  }
  if (s.sft && s.sft->loop.optim.lr * s.lora_lr_scale > 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.lora_lr_scale (", s.lora_lr_scale, ") makes a LoRA learning rate above 1"));
  }
  if (s.dpo) {
    const char* field = s.lora_dpo_lr_scale ? "lora_dpo_lr_scale" : "lora_lr_scale";
    const double scale = s.LoraDpoLrScale();
    if (s.dpo->train.loop.optim.lr * scale > 1.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.", field, " (", scale, ") makes a LoRA DPO learning rate above 1"));
    }
  }
  if (r.Has("compress")) {
    FieldReader c(r.Get("compress"), "spec.compress");
    RETURN_IF_ERROR(c.CheckObject());
    if (c.Has("config")) {
      s.compress_config = c.Get("config");
      if (!s.compress_config.is_object()) return absl::InvalidArgumentError("spec.compress.config must be an object");
      if (s.compress_config.contains("target_ratio") || s.compress_config.contains("target_bytes")) {
        return absl::InvalidArgumentError(
            "spec.compress.config: no target_ratio / target_bytes (spec.ratios sets them)");
      }
      Json probe = s.compress_config;
      probe["target_ratio"] = 0.5;
      StatusOr<CompressionConfig> cfg = ParseCompressionConfig(probe);
      if (!cfg.ok()) return Annotate(cfg.status(), "spec.compress.config");
    }
    RETURN_IF_ERROR(c.ReadInRange<int64_t>("calibration_samples", &s.calibration_samples, 0, 100000));
    if (c.Has("served_factor_precisions")) {
      const std::string field = c.Path("served_factor_precisions");
      const Json& list = c.Get("served_factor_precisions");
      if (!list.is_array()) return absl::InvalidArgumentError(absl::StrCat(field, " must be a list of names"));
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string at = absl::StrCat(field, "[", i, "]");
        if (!list[i].is_string()) return absl::InvalidArgumentError(absl::StrCat(at, " must be a string"));
        StatusOr<FactorPrecision> p = ParseFactorPrecision(list[i].get<std::string>());
        if (!p.ok()) return Annotate(p.status(), at);
        if (std::find(s.served_factor_precisions.begin(), s.served_factor_precisions.end(), *p) !=
            s.served_factor_precisions.end()) {
          return absl::InvalidArgumentError(absl::StrCat(at, ": '", list[i].get<std::string>(), "' twice"));
        }
        s.served_factor_precisions.push_back(*p);
      }
    }
    if (c.Has("refit")) {
      const Json& rf = c.Get("refit");
      if (rf.is_object() && rf.contains("data")) {
        return absl::InvalidArgumentError(
            "spec.compress.refit.data: not allowed (the study refits on each task's generated examples)");
      }
      if (!s.sft) return absl::InvalidArgumentError("spec.compress.refit: needs spec.sft (refits use its stage)");
      // Through the job parser (same fields, same checks), beside the spec's sft stage.
      Json job = {{"name", s.name},
                  {"base_model", r.Get("base_model")},
                  {"task", {{"name", s.tasks[0]}}},
                  {"stages", {{"sft", r.Get("sft")}, {"compress", {{"refit", rf}}}}}};
      StatusOr<JobSpec> parsed = ParseJobSpec(job, base_dir);
      if (!parsed.ok()) return AsSpecError(parsed.status());
      s.refit = parsed->compress->refit;
      s.refit_skip_below_kl = parsed->compress->refit_skip_below_kl;
    }
    RETURN_IF_ERROR(c.Finish());
  }
  if (r.Has("router")) {
    FieldReader c(r.Get("router"), "spec.router");
    RETURN_IF_ERROR(c.CheckObject());
    FidelityRouterSpec rs;
    RETURN_IF_ERROR(c.ReadInRange<int64_t>("eval_per_task", &rs.eval_per_task, 1, 100000));
    RETURN_IF_ERROR(c.Read("extra_templates", &rs.extra_templates));
    if (c.Has("file")) {
      // A router file scored as it is: nothing about training applies.
      const Json& f = c.Get("file");
      if (!f.is_string() || f.get<std::string>().empty()) {
        return absl::InvalidArgumentError("spec.router.file must be a non-empty path string");
      }
      rs.file = ResolveSpecPath(base_dir, f.get<std::string>());
      if (!PathExists(rs.file))
        return absl::InvalidArgumentError(absl::StrCat("spec.router.file: not found: ", rs.file));
      for (const auto& [key, value] : r.Get("router").items()) {
        if (key != "file" && key != "eval_per_task" && key != "extra_templates") {
          return absl::InvalidArgumentError(
              absl::StrCat(c.Path(key),
                           ": not used with spec.router.file (a router file is scored as it is; only eval_per_task and "
                           "extra_templates go with it)"));
        }
      }
    } else {
      RETURN_IF_ERROR(ReadTrainedRouterSpec(c, base_dir, &rs));
    }
    RETURN_IF_ERROR(c.Finish());
    s.router = rs;
  }
  if (r.Has("fusion")) {
    FieldReader c(r.Get("fusion"), "spec.fusion");
    RETURN_IF_ERROR(c.CheckObject());
    FidelityFusionSpec fs;
    RETURN_IF_ERROR(ReadRatio(c, "ratio", &fs.ratio));
    RETURN_IF_ERROR(c.ReadInRange<double>("lambda", &fs.lambda, 1e-6, 100.0));
    RETURN_IF_ERROR(c.ReadInRange<double>("ties_density", &fs.ties_density, 1e-6, 1.0));
    RETURN_IF_ERROR(c.ReadInRange<double>("dare_drop", &fs.dare_drop, 0.0, 0.99));
    RETURN_IF_ERROR(c.ReadInRange<int64_t>("multitask_steps", &fs.multitask_steps, 0, 100000000));
    RETURN_IF_ERROR(c.Finish());
    if (s.tasks.size() < 2) return absl::InvalidArgumentError("spec.fusion: needs at least two spec.tasks");
    if (!s.router) return absl::InvalidArgumentError("spec.fusion: needs spec.router (routed packs use its router)");
    s.fusion = fs;
  }
  if (r.Has("continual")) {
    FieldReader c(r.Get("continual"), "spec.continual");
    RETURN_IF_ERROR(c.CheckObject());
    FidelityContinualSpec cs;
    cs.task_a = s.tasks[0];
    cs.task_b = s.tasks.size() > 1 ? s.tasks[1] : "";
    RETURN_IF_ERROR(c.Read("task_a", &cs.task_a));
    RETURN_IF_ERROR(c.Read("task_b", &cs.task_b));
    RETURN_IF_ERROR(ReadRatio(c, "ratio", &cs.ratio));
    RETURN_IF_ERROR(c.Finish());
    RETURN_IF_ERROR(ValidateStudyTask(cs.task_a, s.tasks, "spec.continual.task_a"));
    RETURN_IF_ERROR(ValidateStudyTask(cs.task_b, s.tasks, "spec.continual.task_b"));
    if (cs.task_a == cs.task_b) return absl::InvalidArgumentError("spec.continual.task_b: must differ from task_a");
    if (!s.router) return absl::InvalidArgumentError("spec.continual: needs spec.router (packs are routed)");
    s.continual = cs;
  }
  if (s.sft_wrong_share > 0 && (s.fusion || s.continual)) {
    return absl::InvalidArgumentError(
        "spec.sft_wrong_share: Table 1 only (Tables 2 and 3 train on every task's right answers)");
  }
  s.tables = {1};
  if (s.fusion) s.tables.insert(2);
  if (s.continual) s.tables.insert(3);
  if (s.router) s.tables.insert(4);
  if (r.Has("tables")) {
    ASSIGN_OR_RETURN(std::vector<int64_t> tables, ReadIntList(r.Get("tables"), "spec.tables", 1, 4));
    s.tables.clear();
    for (int64_t t : tables) {
      if (!s.tables.insert(static_cast<int>(t)).second) {
        return absl::InvalidArgumentError(absl::StrCat("spec.tables: table ", t, " is listed twice"));
      }
    }
    const std::pair<int, bool> sections[] = {
        {2, s.fusion.has_value()}, {3, s.continual.has_value()}, {4, s.router.has_value()}};
    const char* names[] = {"", "", "spec.fusion", "spec.continual", "spec.router"};
    for (const auto& [t, present] : sections) {
      if (s.tables.count(t) && !present) {
        return absl::InvalidArgumentError(absl::StrCat("spec.tables: table ", t, " needs ", names[t]));
      }
    }
    if ((s.tables.count(2) || s.tables.count(3)) && !s.tables.count(1)) {
      return absl::InvalidArgumentError("spec.tables: tables 2 and 3 need table 1 (its packs and fine-tunes)");
    }
  }
  if (!s.sft && (s.tables.count(1) || s.tables.count(2) || s.tables.count(3))) {
    return absl::InvalidArgumentError(
        "spec.sft: missing (the fine-tuning stage of Tables 1-3; without it a spec runs only Table 4: "
        "\"tables\": [4])");
  }
  RETURN_IF_ERROR(r.Finish());
  return s;
}

StatusOr<FidelitySpec> LoadFidelitySpec(const std::string& path) {
  ASSIGN_OR_RETURN(Json j, ReadJsonFile(path));
  const size_t slash = path.rfind('/');
  return ParseFidelitySpec(j, slash == std::string::npos ? "." : path.substr(0, slash));
}

StatusOr<Json> RunFidelityStudy(const FidelitySpec& spec, const FidelityOptions& options) {
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out: an output folder is required");
  Study study(spec, options);
  return study.Run();
}

// Table 1's packs as served at each factor precision (spec
// compress.served_factor_precisions), when the rows have them: accuracy and
// gain kept per ratio and precision.
static void AppendServedPrecisions(const Json& t1, const std::string& regime, const std::vector<double>& ratios,
                                   std::string* md) {
  std::vector<std::string> precisions;
  for (const auto& [task, regimes] : t1["tasks"].items()) {
    for (const Json& p : regimes[regime]["packs"]) {
      const Json served = p.value("served", Json::object());  // items() must not outlive it
      for (const auto& [prec, unused] : served.items()) {
        if (std::find(precisions.begin(), precisions.end(), prec) == precisions.end()) precisions.push_back(prec);
      }
    }
  }
  if (precisions.empty()) return;
  std::vector<std::string> header = {"task"};
  for (double r : ratios) {
    for (const std::string& prec : precisions) header.push_back(absl::StrCat("pack ", RatioLabel(r), ", ", prec));
  }
  absl::StrAppend(md,
                  "Served with the low-rank factors held at each precision (the server's --factor-precision; "
                  "composed from those factors, which factorized serving equals): accuracy (gain kept).\n\n",
                  MarkdownHeader(header));
  for (const auto& [task, regimes] : t1["tasks"].items()) {
    absl::StrAppend(md, "| ", task, " |");
    for (const Json& p : regimes[regime]["packs"]) {
      for (const std::string& prec : precisions) {
        const Json served = p.value("served", Json::object()).value(prec, Json());
        if (served.is_null()) {
          absl::StrAppend(md, " — |");
        } else {
          absl::StrAppend(md, " ", Acc(served["accuracy"]), " (", Pct(served["gain_kept"]), ") |");
        }
      }
    }
    absl::StrAppend(md, "\n");
  }
  absl::StrAppend(md, "\n");
}

// Table 1's Markdown (tables per regime, gain kept, bytes, plot links).
static void AppendTable1(const Json& t1, std::string* md) {
  const std::vector<double> ratios = t1["ratios"].get<std::vector<double>>();
  absl::StrAppend(
      md, "## Table 1: packs vs LoRA at equal bytes\n\n",
      "Pack sizes are .skillpack file bytes as a share of the fp16 delta (", t1["fp16_delta_bytes"].get<int64_t>(),
      " bytes); LoRA's rank is chosen so that its fp16 adapter bytes (", t1["lora_bytes_per_rank"].get<int64_t>(),
      " per rank) match each ratio's byte target (under SFT→DPO, DPO goes on training the SFT adapter, "
      "so LoRA stores one adapter in both regimes). Gain kept = (x − base) / (full FT − base).");
  if (t1.contains("lora_lr_scale")) {
    const Json& scale = t1["lora_lr_scale"];
    absl::StrAppend(md, " LoRA trains at ", absl::StrFormat("%g", scale["sft"].get<double>()),
                    "× full FT's learning rate in SFT");
    if (scale.contains("dpo"))
      absl::StrAppend(md, " and ", absl::StrFormat("%g", scale["dpo"].get<double>()), "× in DPO");
    absl::StrAppend(md, ".");
  }
  absl::StrAppend(md, "\n\n");
  if (t1.value("refit_steps", int64_t{0}) > 0) {
    int64_t packs = 0, refitted = 0, skipped = 0;
    for (const auto& [task, regimes] : t1["tasks"].items()) {
      for (const auto& [regime, r] : regimes.items()) {
        for (const Json& p : r["packs"]) {
          ++packs;
          if (p.contains("refit") && p["refit"].value("kept", "") == "refitted") ++refitted;
          if (p.contains("refit") && p["refit"].value("skipped", false)) ++skipped;
        }
      }
    }
    absl::StrAppend(
        md, "Every pack was refitted by distillation from its fine-tune (", t1["refit_steps"].get<int64_t>(),
        " steps, trainer/pack_refit.h), keeping its size, unless its validation KL from the fine-tune "
        "was already at most ",
        absl::StrFormat("%g", t1.value("refit_skip_below_kl", 0.0)), " nats per token (", skipped,
        " packs); the refit was kept where it lowered the validation KL: ", refitted, " of ", packs, " packs.\n\n");
  }
  if (t1.value("sft_wrong_share", 0.0) > 0) {
    absl::StrAppend(md,
                    "SFT data from two sources: ", absl::StrFormat("%.0f%%", 100 * t1["sft_wrong_share"].get<double>()),
                    " of the SFT examples answer with the task's natural mistake (Task::WrongResponse) in place of "
                    "the answer.\n\n");
  }
  for (const auto& regime_j : t1["regimes"]) {
    const std::string regime = regime_j.get<std::string>();
    // Per ratio: the packs' columns, then LoRA's, after `leading`.
    auto columns = [&](std::vector<std::string> leading, const char* pack_suffix, const char* lora_suffix) {
      for (double r : ratios) leading.push_back(absl::StrCat("pack ", RatioLabel(r), pack_suffix));
      for (double r : ratios) leading.push_back(absl::StrCat("LoRA ", RatioLabel(r), lora_suffix));
      return MarkdownHeader(leading);
    };
    absl::StrAppend(md, "### ", regime == "sft" ? "SFT" : "SFT → DPO", "\n\n",
                    columns({"task", "base", "full FT"}, "", ""));
    std::string gain = columns({"task"}, "", "");
    std::string bytes = columns({"task"}, " file bytes (ratio)", " rank (bytes)");
    for (const auto& [task, regimes] : t1["tasks"].items()) {
      const Json& r = regimes[regime];
      absl::StrAppend(md, "| ", task, " | ", Acc(r["base"]), " | ", Acc(r["full_ft"]), " |");
      absl::StrAppend(&gain, "| ", task, " |");
      absl::StrAppend(&bytes, "| ", task, " |");
      for (const Json& p : r["packs"]) {
        absl::StrAppend(md, " ", Acc(p["accuracy"]), " |");
        absl::StrAppend(&gain, " ", Pct(p["gain_kept"]), " |");
        absl::StrAppend(&bytes, " ", p["file_bytes"].get<int64_t>(),
                        absl::StrFormat(" (%.4f)", p["file_ratio"].get<double>()), " |");
      }
      for (const Json& l : r["lora"]) {
        absl::StrAppend(md, " ", Acc(l["accuracy"]), " |");
        absl::StrAppend(&gain, " ", Pct(l["gain_kept"]), " |");
        absl::StrAppend(&bytes, " ", l["rank"].get<int64_t>(), " (", l["bytes"].get<int64_t>(), ") |");
      }
      absl::StrAppend(md, "\n");
      absl::StrAppend(&gain, "\n");
      absl::StrAppend(&bytes, "\n");
    }
    if (regime == "sft_dpo") {
      // Cells whose model found no on-policy pair before the last round (DpoRounds).
      const int64_t rounds = t1.value("dpo_rounds", int64_t{1});
      std::vector<std::string> short_cells;
      for (const auto& [task, regimes] : t1["tasks"].items()) {
        const Json& r = regimes[regime];
        const int64_t ft_rounds = r.value("full_ft_dpo_rounds_trained", rounds);
        if (ft_rounds < rounds) short_cells.push_back(absl::StrCat(task, " full FT: ", ft_rounds));
        for (const Json& l : r["lora"]) {
          const int64_t n = l.value("dpo_rounds_trained", rounds);
          if (n < rounds) {
            short_cells.push_back(absl::StrCat(task, " LoRA ", RatioLabel(l["ratio"].get<double>()), " (rank ",
                                               l["rank"].get<int64_t>(), "): ", n));
          }
        }
      }
      if (!short_cells.empty()) {
        absl::StrAppend(md, "\nFewer DPO rounds than the spec's ", rounds,
                        " where a model answered every on-policy training prompt right (no pair to prefer against; "
                        "the rounds stop there, and with 0 the cell is its SFT model): ",
                        absl::StrJoin(short_cells, "; "), ".\n");
      }
    }
    absl::StrAppend(md, "\nShare of full FT's gain kept:\n\n", gain, "\nBytes:\n\n", bytes, "\n");
    AppendServedPrecisions(t1, regime, ratios, md);
  }
  absl::StrAppend(md, "Plots: ");
  for (const auto& [task, unused] : t1["tasks"].items()) {
    absl::StrAppend(md, "[", task, "](table1_", task, ".svg) ");
  }
  absl::StrAppend(md, "\n\n");
}

std::string FidelityMarkdown(const Json& res) {
  std::string md = absl::StrCat("# Fidelity study: ", res.value("name", "fidelity"), "\n\n");
  absl::StrAppend(
      &md, "Base model: `", res.value("base_model", ""), "` (", res.value("parameters", 0),
      " parameters). Accuracy is held-out exact match on ", res.value("held_out_per_task", 0), " prompts per task. ",
      absl::StrFormat("%.0f s wall, %.0f s CPU.", res.value("wall_seconds", 0.0), res.value("cpu_seconds", 0.0)),
      "\n\n");
  if (res.contains("table1")) AppendTable1(res["table1"], &md);
  if (res.contains("table2")) {
    const Json& t2 = res["table2"];
    absl::StrAppend(&md, "## Table 2: multi-skill fusion\n\nPacks at ", RatioLabel(t2["ratio"].get<double>()),
                    " of the fp16 delta (SFT). Routed: the router of Table 4 picks one pack (or none) per prompt. "
                    "Merges fold every task's pack into one delta (λ ",
                    t2["merge"]["lambda"].get<double>(), ", TIES density ", t2["merge"]["ties_density"].get<double>(),
                    ", DARE drop ", t2["merge"]["dare_drop"].get<double>(), "). Multi-task FT: one full fine-tune on ",
                    "all tasks' examples (", t2["multitask_steps"].get<int64_t>(), " steps).\n\n");
    std::vector<std::string> header = {"method"};
    for (const auto& task : t2["tasks"]) header.push_back(task.get<std::string>());
    header.push_back("mean");
    absl::StrAppend(&md, MarkdownHeader(header));
    for (const Json& row : t2["rows"]) {
      absl::StrAppend(&md, "| ", row["method"].get<std::string>(), " |");
      for (const auto& task : t2["tasks"])
        absl::StrAppend(&md, " ", Acc(row["accuracy"][task.get<std::string>()]), " |");
      absl::StrAppend(&md, " ", Acc(row["mean"]), " |\n");
    }
    absl::StrAppend(&md, "\n");
  }
  if (res.contains("table3")) {
    const Json& t3 = res["table3"];
    absl::StrAppend(&md, "## Table 3: continual learning (", t3["task_a"].get<std::string>(), " then ",
                    t3["task_b"].get<std::string>(), ")\n\nLoRA rank ", t3["lora_rank"].get<int64_t>(), ", packs at ",
                    RatioLabel(t3["ratio"].get<double>()),
                    " of the fp16 delta. Forgetting = accuracy on A before B − after B.\n\n",
                    "| method | A before B | A after B | forgetting | B after B |\n|---|---|---|---|---|\n");
    for (const Json& row : t3["rows"]) {
      absl::StrAppend(&md, "| ", row["method"].get<std::string>(), " | ", Acc(row["a_before"]), " | ",
                      Acc(row["a_after"]), " | ", Acc(row["forgetting"]), " | ", Acc(row["b_after"]), " |\n");
    }
    absl::StrAppend(&md, "\n");
  }
  if (res.contains("table4")) {
    const Json& t4 = res["table4"];
    std::string features = "mean-pooled hidden state at layer " + std::to_string(t4["layer"].get<int64_t>());
    if (t4.contains("features")) {
      features = absl::StrCat("hidden states after layers ",
                              absl::StrJoin(t4["features"]["layers"].get<std::vector<int64_t>>(), ", "), ", pooled by ",
                              absl::StrJoin(t4["features"]["pooling"].get<std::vector<std::string>>(), " and "));
    }
    absl::StrAppend(&md, "## Table 4: routing on held-out prompts\n\n");
    if (t4.contains("router_file")) {
      absl::StrAppend(&md, "Router read from `", t4["router_file"].get<std::string>(), "` (labels ",
                      absl::StrJoin(t4["labels"].get<std::vector<std::string>>(), ", "),
                      "), not trained here: it is scored as it is");
    } else {
      absl::StrAppend(&md, "Router trained on ", t4["train_prompts"].get<int64_t>(),
                      " prompts (raw task prompts and training-template paraphrases of training problems, general "
                      "prompts labelled none",
                      t4.contains("general_corpus") && t4["general_corpus"]["sentences"].get<int64_t>() > 0
                          ? absl::StrCat(", of them ", t4["general_corpus"]["sentences"].get<int64_t>(),
                                         " corpus sentences labelled none")
                          : "",
                      ")");
    }
    absl::StrAppend(&md, "; features: ", features, "; policy ", t4["policy"].get<std::string>(),
                    ". Held-out templates and general prompts (new openers and topics), of the first held-out set and "
                    "of the twelve fresh ones, never occur in training",
                    t4.contains("router_file") ? " if the router was trained by `make-router-data` or this study" : "");
    if (t4.contains("selection")) {
      const Json& sel = t4["selection"];
      const bool amounts = t4.contains("general_corpus") && t4["general_corpus"]["amounts"].size() > 1;
      absl::StrAppend(&md, ", nor in model selection: ", sel["scores"].size(), " settings (candidate",
                      amounts ? " x corpus sentences" : "", " x epochs) were compared by ", sel["folds"].get<int64_t>(),
                      "-fold validation that holds out whole training templates and general openers",
                      sel.value("general_groups", "opener") == "opener_topic" ? " and topics" : "",
                      t4.contains("general_corpus") ? " (corpus sentences are training-only)" : "", "; chosen: `",
                      sel["chosen"].get<std::string>(), "` at ", sel["chosen_epochs"].get<int64_t>(),
                      " epochs (balanced validation accuracy ", Acc(sel["validation"]), ")");
    }
    // An ensemble's table has member 0 alone (the router of one MLP) beside it.
    const bool first_member = t4.contains("first_member");
    if (first_member) {
      absl::StrAppend(&md, ".\n\n| category | n | accuracy (ensemble of ", t4["options"]["ensemble"].get<int64_t>(),
                      ") | member 0 alone | per label |\n|---|---|---|---|---|\n");
    } else {
      absl::StrAppend(&md, ".\n\n| category | n | accuracy | per label |\n|---|---|---|---|\n");
    }
    for (const auto& [category, c] : t4["categories"].items()) {
      std::string per;
      for (const auto& [label, a] : c["per_label"].items()) {
        absl::StrAppend(&per, per.empty() ? "" : ", ", label, " ", absl::StrFormat("%.3f", a.get<double>()));
      }
      const std::string single =
          first_member ? absl::StrCat(Acc(t4["first_member"]["categories"][category]["accuracy"]), " | ") : "";
      absl::StrAppend(&md, "| ", category, " | ", c["n"].get<int64_t>(), " | ", Acc(c["accuracy"]), " | ", single, per,
                      " |\n");
    }
    absl::StrAppend(&md, "\n");
    absl::StrAppend(&md, RoutingConfusionMarkdown(t4["categories"]));
    if (!t4["misrouted_examples"].empty()) {
      absl::StrAppend(&md, "Misrouted prompts (each category's first ", kMisroutedListed, "):\n\n",
                      MarkdownHeader({"category", "prompt", "expected", "routed"}));
      for (const Json& e : t4["misrouted_examples"]) {
        absl::StrAppend(&md, "| ", e.value("category", ""), " | ",
                        absl::StrReplaceAll(e["prompt"].get<std::string>(), {{"|", "\\|"}}), " | ",
                        e["expected"].get<std::string>(), " | ", e["routed"].get<std::string>(), " |\n");
      }
      absl::StrAppend(&md, "\n");
    }
    if (t4.contains("selection")) {
      // Each candidate at its best epochs, in the spec's order.
      std::vector<std::string> order;
      std::map<std::string, const Json*> best;
      for (const Json& sc : t4["selection"]["scores"]) {
        const std::string name = sc["candidate"].get<std::string>();
        if (!best.count(name)) order.push_back(name);
        if (!best.count(name) ||
            sc["balanced_accuracy"].get<double>() > (*best[name])["balanced_accuracy"].get<double>()) {
          best[name] = &sc;
        }
      }
      absl::StrAppend(&md,
                      "Model selection (validation on held-out training templates; each candidate at its best "
                      "epochs):\n\n",
                      MarkdownHeader({"candidate", "epochs", "balanced accuracy", "worst label", "per label"}));
      for (const std::string& name : order) {
        const Json& sc = *best[name];
        std::string per;
        for (const auto& [label, a] : sc["per_label"].items()) {
          absl::StrAppend(&per, per.empty() ? "" : ", ", label, " ", absl::StrFormat("%.3f", a.get<double>()));
        }
        absl::StrAppend(&md, "| ", name, " | ", sc["epochs"].get<int64_t>(), " | ", Acc(sc["balanced_accuracy"]), " | ",
                        Acc(sc["worst_label"]), " | ", per, " |\n");
      }
      absl::StrAppend(&md, "\n");
    }
  }
  return md;
}

}  // namespace skillpack
