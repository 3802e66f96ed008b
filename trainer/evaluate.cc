#include "trainer/evaluate.h"

#include <chrono>

#include <ATen/ATen.h>

#include "core/generator.h"
#include "core/kv_cache.h"

namespace skillpack {

Json TaskEvalResultToJson(const TaskEvalResult& r) {
  Json j{{"total", r.total}, {"correct", r.correct}, {"accuracy", r.accuracy}, {"seconds", r.seconds}};
  j["samples"] = Json::array();
  for (const auto& s : r.samples) {
    j["samples"].push_back({{"prompt", s[0]}, {"expected", s[1]}, {"generated", s[2]}});
  }
  return j;
}

StatusOr<TaskEvalResult> EvaluateTask(const Transformer& model, std::shared_ptr<const ModelWeights> weights,
                                      const Tokenizer& tokenizer, const Task& task,
                                      const std::vector<TaskExample>& examples, const TaskEvalOptions& options) {
  if (examples.empty()) return absl::InvalidArgumentError("evaluation: no examples");
  if (options.max_batch < 1) return absl::InvalidArgumentError("evaluation: max_batch must be >= 1");
  const auto start = std::chrono::steady_clock::now();
  const int32_t max_new = task.max_response_bytes() + std::max(1, options.extra_tokens);
  std::vector<GenerationRequest> requests;
  int64_t longest = 0;
  for (const TaskExample& ex : examples) {
    GenerationRequest r;
    r.prompt_tokens = tokenizer.Encode(ex.prompt, /*parse_special=*/true, /*add_bos=*/true);
    r.params.temperature = 0;
    r.params.max_new_tokens = max_new;
    r.params.seed = 0;
    r.weights = weights;
    longest = std::max<int64_t>(longest, r.prompt_tokens.size());
    requests.push_back(std::move(r));
  }
  const int64_t slots = std::min<int64_t>(options.max_batch, static_cast<int64_t>(examples.size()));
  const at::Device device = weights->embed_tokens().device();
  ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache,
                   KvCache::Create(model.config(), slots, longest + max_new + 1,
                                   at::TensorOptions().dtype(weights->embed_tokens().scalar_type()).device(device)));
  EngineOptions engine;
  engine.max_batch = static_cast<int32_t>(slots);
  ASSIGN_OR_RETURN(
      std::vector<GenerationOutput> outputs,
      GenerateAll(model, tokenizer, *cache, EosIds(model.config(), tokenizer), std::move(requests), engine));
  TaskEvalResult r;
  r.total = static_cast<int64_t>(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    if (outputs[i].finish_reason == FinishReason::kError) {
      return Annotate(outputs[i].status, absl::StrCat("evaluation: generating for \"", examples[i].prompt, "\""));
    }
    if (task.Verify(examples[i].prompt, outputs[i].text)) ++r.correct;
    if (static_cast<int32_t>(r.samples.size()) < options.num_samples) {
      r.samples.push_back({examples[i].prompt, examples[i].response, outputs[i].text});
    }
  }
  r.accuracy = static_cast<double>(r.correct) / static_cast<double>(r.total);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace skillpack
