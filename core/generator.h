// The generation engine: continuous batching of sequences over one Transformer
// and one KV cache pool. Sequences join (Add) and leave (finish, Cancel) between
// steps; each step prefills newly admitted sequences and decodes one token for
// every running one, grouped by weight set (base or a fused pack set), so
// requests with different packs run side by side; within a group, each
// sequence's own WeightDelta (factorized packs) is applied to its rows. Not thread-safe: one thread
// drives an engine (the server's scheduler, or GenerateAll for offline use).
#ifndef SKILLPACK_CORE_GENERATOR_H_
#define SKILLPACK_CORE_GENERATOR_H_

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/sampler.h"
#include "core/status.h"
#include "core/stop_matcher.h"
#include "core/tokenizer.h"

namespace skillpack {

class KvCache;
class ModelWeights;
class Transformer;
class WeightDelta;

enum class FinishReason { kNone, kLength, kStop, kCancelled, kError };
const char* FinishReasonName(FinishReason r);  // "length", "stop", "cancelled", "error"

struct GenerationRequest {
  std::vector<int32_t> prompt_tokens;
  SamplingParams params;
  std::shared_ptr<const ModelWeights> weights;  // the set to run with (base or fused)
  // Corrections applied to this sequence's rows only (factorized serving:
  // core/weight_delta.h); null for none. Sequences with the same `weights`
  // share one forward pass whatever their deltas.
  std::shared_ptr<const WeightDelta> delta;
};

// What a sequence produced so far; final when finish_reason != kNone.
struct GenerationOutput {
  std::string text;             // stop strings and special tokens excluded
  std::vector<int32_t> tokens;  // generated ids (a final eos / stop token included)
  std::vector<float> logprobs;  // per generated token, when params.logprobs
  FinishReason finish_reason = FinishReason::kNone;
  Status status;  // set when finish_reason == kError
  int32_t prompt_tokens = 0;
  double queue_seconds = 0;          // Add -> prefill start
  double time_to_first_token_s = 0;  // Add -> first token
  double total_seconds = 0;          // Add -> finish
};

// Called on the engine thread for each step that produced text or tokens for a
// sequence, and once more (or only) with `done` when it finishes.
struct GenerationEvent {
  int64_t id;
  std::string new_text;
  std::vector<int32_t> new_tokens;
  bool done = false;
  const GenerationOutput* output;  // valid during the callback
};
using GenerationCallback = std::function<void(const GenerationEvent&)>;

struct EngineOptions {
  int32_t max_batch = 32;  // sequences decoded per forward
};

class GenerationEngine {
 public:
  // `eos_ids`: ids that end a sequence unless params.ignore_eos.
  GenerationEngine(const Transformer& model, const Tokenizer& tokenizer, KvCache& cache, std::vector<int32_t> eos_ids,
                   EngineOptions options = {});
  ~GenerationEngine();

  // Validates and queues a sequence; returns its id. INVALID_ARGUMENT naming
  // the problem (empty prompt, bad token id, bad sampling field, too long).
  StatusOr<int64_t> Add(GenerationRequest request, GenerationCallback callback);
  // Finishes the sequence with kCancelled at the next step boundary and frees its slot.
  void Cancel(int64_t id);
  // One scheduling step. Errors of the model finish the affected sequences with
  // kError rather than failing the engine.
  void Step();
  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }

 private:
  struct Sequence;
  void Admit();
  void RunGroup(const std::vector<Sequence*>& group, bool prefill);
  void Consume(Sequence& s, const float* logits);
  void Finish(Sequence& s, FinishReason reason, Status status = absl::OkStatus());
  void Reap();

  const Transformer& model_;
  const Tokenizer& tokenizer_;
  KvCache& cache_;
  std::vector<int32_t> eos_ids_;
  EngineOptions options_;
  int64_t next_id_ = 1;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
};

// Offline helper: runs `requests` to completion on a fresh engine, returning
// one output per request in order.
StatusOr<std::vector<GenerationOutput>> GenerateAll(const Transformer& model, const Tokenizer& tokenizer,
                                                    KvCache& cache, std::vector<int32_t> eos_ids,
                                                    std::vector<GenerationRequest> requests,
                                                    EngineOptions options = {});

// End-of-sequence ids for a model: config.json's eos_token_id plus the
// tokenizer's end tokens.
std::vector<int32_t> EosIds(const ModelConfig& config, const Tokenizer& tokenizer);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_GENERATOR_H_
