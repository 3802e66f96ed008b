#include "trainer/distill.h"

#include <chrono>
#include <mutex>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "rpc/channel.h"
#include "rpc/grpc_status.h"
#include "skillpack/v1/inference.grpc.pb.h"
#include "skillpack/v1/trainer.grpc.pb.h"
#include "trainer/spec_reader.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;

// SplitMix64 finaliser: well-spread per-sample seeds from small integers.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

Status ParseSource(const Json& j, const std::string& path, DistillSource* out) {
  if (j.is_string()) {
    out->address = j.get<std::string>();
  } else {
    FieldReader r(j, path);
    RETURN_IF_ERROR(r.CheckObject());
    if (!r.Has("address")) return absl::InvalidArgumentError(absl::StrCat(path, ".address: missing"));
    RETURN_IF_ERROR(r.Read("address", &out->address));
    if (r.Has("packs")) {
      const Json& p = r.Get("packs");
      if (!p.is_array()) return absl::InvalidArgumentError(absl::StrCat(path, ".packs must be an array of names"));
      for (const Json& name : p) {
        if (!name.is_string() || name.get<std::string>().empty()) {
          return absl::InvalidArgumentError(absl::StrCat(path, ".packs must hold non-empty strings"));
        }
        out->packs.push_back(name.get<std::string>());
      }
    }
    RETURN_IF_ERROR(r.Finish());
  }
  return ValidateAddress(out->address, path);
}

StatusOr<std::vector<std::string>> ReadPrompts(const std::string& path, int64_t limit) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<std::string> prompts;
  int64_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const std::string what = absl::StrCat(path, ":", line_no);
    ASSIGN_OR_RETURN(Json j, ParseJson(line, what));
    ASSIGN_OR_RETURN(std::string p, GetField<std::string>(j, "prompt", what));
    if (p.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": field 'prompt' is empty"));
    prompts.push_back(std::move(p));
    if (static_cast<int64_t>(prompts.size()) == limit) break;
  }
  if (prompts.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no prompts"));
  return prompts;
}

struct Sample {
  std::string text;
  double score = 0;
  bool done = false;
};

}  // namespace

StatusOr<DistillStageSpec> ParseDistillStage(const Json& j, const std::string& path, const std::string& base_dir,
                                             const std::string& job_task) {
  DistillStageSpec spec;
  FieldReader r(j, path);
  RETURN_IF_ERROR(r.CheckObject());
  if (!r.Has("sources")) return absl::InvalidArgumentError(absl::StrCat(path, ".sources: missing"));
  const Json& sources = r.Get("sources");
  if (!sources.is_array() || sources.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".sources must be a non-empty array of \"host:port\""));
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    DistillSource s;
    RETURN_IF_ERROR(ParseSource(sources[i], absl::StrCat(path, ".sources[", i, "]"), &s));
    spec.sources.push_back(std::move(s));
  }
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("samples", &spec.samples, 1, 64));
  spec.task = job_task;
  RETURN_IF_ERROR(r.Read("task", &spec.task));
  if (!spec.task.empty()) {
    StatusOr<std::unique_ptr<Task>> task = MakeTask(spec.task);
    if (!task.ok()) return Annotate(task.status(), r.Path("task"));
  }
  RETURN_IF_ERROR(r.ReadInRange<int64_t>("prompts", &spec.prompts, 1, 1000000));
  if (r.Has("prompts_file")) {
    RETURN_IF_ERROR(r.Read("prompts_file", &spec.prompts_file));
    spec.prompts_file = ResolveSpecPath(base_dir, spec.prompts_file);
    if (!PathExists(spec.prompts_file)) {
      return absl::InvalidArgumentError(absl::StrCat(r.Path("prompts_file"), ": file not found: ", spec.prompts_file));
    }
  } else if (spec.task.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".task: required (the prompts' source) unless ", path, ".prompts_file is given"));
  }
  if (r.Has("temperature")) {
    const Json& t = r.Get("temperature");
    spec.temperatures.clear();
    if (t.is_number()) {
      spec.temperatures.push_back(t.get<double>());
    } else if (t.is_array() && !t.empty()) {
      for (const Json& v : t) {
        if (!v.is_number()) break;
        spec.temperatures.push_back(v.get<double>());
      }
    }
    if (spec.temperatures.empty() || spec.temperatures.size() != (t.is_array() ? t.size() : 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(r.Path("temperature"), " must be a number or an array of numbers"));
    }
    for (double v : spec.temperatures) {
      if (!(v >= 0 && v <= 10)) {
        return absl::InvalidArgumentError(absl::StrCat(r.Path("temperature"), " must be in [0, 10], got ", v));
      }
    }
  }
  RETURN_IF_ERROR(r.ReadInRange<double>("top_p", &spec.top_p, 1e-6, 1.0));
  RETURN_IF_ERROR(r.ReadInRange<int32_t>("max_new_tokens", &spec.max_new_tokens, 0, 1 << 16));
  RETURN_IF_ERROR(r.Read("reward", &spec.reward));
  if (!spec.reward.empty()) RETURN_IF_ERROR(ValidateAddress(spec.reward, r.Path("reward")));
  if (spec.reward.empty() && spec.task.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".task: a scorer is required: a task (its verifier) or ", path, ".reward"));
  }
  RETURN_IF_ERROR(r.ReadInRange<int32_t>("concurrency", &spec.concurrency, 1, 256));
  RETURN_IF_ERROR(r.ReadInRange<double>("timeout_seconds", &spec.timeout_seconds, 0.001, 86400.0));
  RETURN_IF_ERROR(r.Finish());
  return spec;
}

StatusOr<DistillResult> RunDistillStage(const DistillStageSpec& spec, uint64_t seed, const std::string& out_dir,
                                        const DistillControl& control) {
  const Clock::time_point start = Clock::now();
  if (spec.sources.empty()) return absl::InvalidArgumentError("distill: no sources");
  std::unique_ptr<Task> task;
  if (!spec.task.empty()) {
    ASSIGN_OR_RETURN(task, MakeTask(spec.task));
  }

  // Prompts.
  std::vector<std::string> prompts;
  if (!spec.prompts_file.empty()) {
    ASSIGN_OR_RETURN(prompts, ReadPrompts(spec.prompts_file, spec.prompts));
  } else {
    StatusOr<std::vector<TaskExample>> ex =
        GenerateTaskExamples(*task, TaskSplit::kTrain, spec.prompts, Mix(seed + 17), /*unique=*/true);
    if (!ex.ok()) return Annotate(ex.status(), "distill: prompts");
    for (TaskExample& e : *ex) prompts.push_back(std::move(e.prompt));
  }
  const int32_t max_new_tokens =
      spec.max_new_tokens > 0 ? spec.max_new_tokens : (task ? task->max_response_bytes() + 8 : 64);

  // Generation: one work item per (prompt, source, sample), in that order.
  const size_t n_src = spec.sources.size();
  const size_t n_samp = static_cast<size_t>(spec.samples);
  const size_t per_prompt = n_src * n_samp;
  const size_t total = prompts.size() * per_prompt;
  std::vector<Sample> samples(total);
  std::vector<std::unique_ptr<v1::Inference::Stub>> stubs;
  for (const DistillSource& s : spec.sources) stubs.push_back(v1::Inference::NewStub(MakeChannel(s.address)));

  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Status first_error;  // guarded by mu
  int64_t done = 0;    // guarded by mu
  auto worker = [&]() {
    for (;;) {
      if (failed.load() || (control.cancel != nullptr && control.cancel->load())) return;
      const size_t item = next.fetch_add(1);
      if (item >= total) return;
      const size_t p = item / per_prompt;
      const size_t src = (item % per_prompt) / n_samp;
      const size_t k = item % n_samp;
      v1::GenerateRequest req;
      req.set_prompt(prompts[p]);
      req.set_request_id(absl::StrCat("distill-", p, "-", src, "-", k));
      v1::SamplingParams* sp = req.mutable_sampling();
      sp->set_max_new_tokens(max_new_tokens);
      sp->set_temperature(static_cast<float>(spec.temperatures[k % spec.temperatures.size()]));
      sp->set_top_p(static_cast<float>(spec.top_p));
      sp->set_seed(Mix(seed * 0x100000001B3ull + item));
      if (!spec.sources[src].packs.empty()) {
        req.mutable_skills()->set_mode(v1::Skills::EXPLICIT);
        for (const std::string& name : spec.sources[src].packs) req.mutable_skills()->add_packs()->set_name(name);
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(spec.timeout_seconds * 1000)));
      v1::GenerateResponse resp;
      const grpc::Status s = stubs[src]->Generate(&ctx, req, &resp);
      std::lock_guard<std::mutex> lock(mu);
      if (!s.ok()) {
        if (!failed.exchange(true)) {
          first_error = FromGrpcStatus(s, absl::StrCat("distill: source ", spec.sources[src].address));
        }
        return;
      }
      samples[item].text = resp.text();
      samples[item].done = true;
      ++done;
      if (control.progress) control.progress(done, static_cast<int64_t>(total));
    }
  };
  std::vector<std::thread> threads;
  const size_t n_threads = std::min<size_t>(static_cast<size_t>(spec.concurrency), std::max<size_t>(1, total));
  for (size_t i = 0; i < n_threads; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  if (failed.load()) return first_error;
  if (control.cancel != nullptr && control.cancel->load()) return absl::CancelledError("distill: cancelled");
  const double generate_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  // Scoring.
  std::unique_ptr<v1::Reward::Stub> reward;
  if (!spec.reward.empty()) reward = v1::Reward::NewStub(MakeChannel(spec.reward));
  for (size_t p = 0; p < prompts.size(); ++p) {
    Sample* group = &samples[p * per_prompt];
    if (reward == nullptr) {
      for (size_t i = 0; i < per_prompt; ++i) group[i].score = task->Verify(prompts[p], group[i].text) ? 1.0 : 0.0;
      continue;
    }
    if (control.cancel != nullptr && control.cancel->load()) return absl::CancelledError("distill: cancelled");
    v1::ScoreRequest req;
    req.set_prompt(prompts[p]);
    for (size_t i = 0; i < per_prompt; ++i) req.add_responses(group[i].text);
    v1::ScoreResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(spec.timeout_seconds * 1000)));
    RETURN_IF_ERROR(FromGrpcStatus(reward->Score(&ctx, req, &resp), absl::StrCat("distill: reward ", spec.reward)));
    if (resp.scores_size() != static_cast<int>(per_prompt)) {
      return absl::InvalidArgumentError(absl::StrCat("distill: reward ", spec.reward, " returned ", resp.scores_size(),
                                                     " scores for ", per_prompt, " responses"));
    }
    for (size_t i = 0; i < per_prompt; ++i) group[i].score = resp.scores(static_cast<int>(i));
  }

  // Selection.
  DistillResult result;
  std::vector<int64_t> passed(n_src, 0);
  int64_t prompts_with_pass = 0;
  Json all = Json::array();
  for (size_t p = 0; p < prompts.size(); ++p) {
    const Sample* group = &samples[p * per_prompt];
    size_t best = 0, worst = 0;
    for (size_t i = 0; i < per_prompt; ++i) {
      if (group[i].score > 0) ++passed[i / n_samp];
      if (group[i].score > group[best].score) best = i;
      if (group[i].score < group[worst].score) worst = i;
    }
    if (group[best].score > 0) {
      ++prompts_with_pass;
      result.sft.push_back({prompts[p], group[best].text, false});
    }
    if (group[best].score > group[worst].score && group[best].text != group[worst].text) {
      result.pairs.push_back({prompts[p], group[best].text, group[worst].text, false});
    }
  }
  const std::string dir = JoinPath(out_dir, "distill");
  RETURN_IF_ERROR(MakeDirectories(dir));
  result.sft_path = JoinPath(dir, "sft.jsonl");
  result.pairs_path = JoinPath(dir, "pairs.jsonl");
  // The writers refuse nothing; empty sets give empty files.
  RETURN_IF_ERROR(WriteSftJsonl(result.sft_path, result.sft));
  RETURN_IF_ERROR(WritePreferenceJsonl(result.pairs_path, result.pairs));
  std::string lines;
  for (size_t item = 0; item < total; ++item) {
    Json j;
    j["prompt"] = prompts[item / per_prompt];
    j["source"] = spec.sources[(item % per_prompt) / n_samp].address;
    j["sample"] = item % n_samp;
    j["response"] = samples[item].text;
    j["score"] = samples[item].score;
    lines += j.dump() + "\n";
  }
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, "samples.jsonl"), lines));

  Json& rep = result.report;
  rep["prompts"] = prompts.size();
  rep["samples_per_source"] = spec.samples;
  rep["requests"] = total;
  rep["scorer"] = spec.reward.empty() ? absl::StrCat("verifier:", spec.task) : absl::StrCat("reward:", spec.reward);
  rep["sources"] = Json::array();
  for (size_t s = 0; s < n_src; ++s) {
    const double n = static_cast<double>(prompts.size() * n_samp);
    rep["sources"].push_back({{"address", spec.sources[s].address},
                              {"samples", static_cast<int64_t>(n)},
                              {"passed", passed[s]},
                              {"pass_rate", n > 0 ? passed[s] / n : 0.0}});
  }
  rep["prompts_with_a_passing_sample"] = prompts_with_pass;
  rep["sft_examples"] = result.sft.size();
  rep["dpo_pairs"] = result.pairs.size();
  rep["sft_path"] = result.sft_path;
  rep["pairs_path"] = result.pairs_path;
  rep["generate_seconds"] = generate_seconds;
  rep["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace skillpack
