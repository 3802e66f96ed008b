#include "core/generator.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "core/kv_cache.h"
#include "core/model.h"
#include "core/weights.h"

namespace skillpack {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "none";
}

struct GenerationEngine::Sequence {
  int64_t id = 0;
  GenerationRequest req;
  GenerationCallback callback;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StopMatcher> stop;
  std::unique_ptr<IncrementalDecoder> decoder;
  std::vector<int32_t> history;  // prompt + generated (repetition penalty)
  int32_t slot = -1;
  bool prefilled = false;
  bool cancel_requested = false;
  bool stop_string_hit = false;
  Clock::time_point added;
  GenerationOutput out;
  GenerationEvent pending;  // text/tokens produced in this step
};

GenerationEngine::GenerationEngine(const Transformer& model, const Tokenizer& tokenizer, KvCache& cache,
                                   std::vector<int32_t> eos_ids, EngineOptions options)
    : model_(model), tokenizer_(tokenizer), cache_(cache), eos_ids_(std::move(eos_ids)), options_(options) {}

GenerationEngine::~GenerationEngine() {
  for (auto& s : running_) cache_.Release(s->slot);
}

StatusOr<int64_t> GenerationEngine::Add(GenerationRequest request, GenerationCallback callback) {
  const ModelConfig& c = model_.config();
  if (request.prompt_tokens.empty()) return absl::InvalidArgumentError("prompt: no tokens");
  if (!request.weights) return absl::InvalidArgumentError("no weight set given");
  for (int32_t t : request.prompt_tokens) {
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token id ", t, " out of range [0, ", c.vocab_size, ")"));
    }
  }
  RETURN_IF_ERROR(ValidateSamplingParams(request.params, static_cast<int32_t>(c.vocab_size)));
  const int64_t need = static_cast<int64_t>(request.prompt_tokens.size()) + request.params.max_new_tokens;
  const int64_t limit = std::min<int64_t>(cache_.max_seq_len(), c.max_position_embeddings);
  if (need > limit) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", request.prompt_tokens.size(),
                                                   " tokens plus max_new_tokens ", request.params.max_new_tokens,
                                                   " exceeds the context length ", limit));
  }
  auto s = std::make_unique<Sequence>();
  s->id = next_id_++;
  s->sampler = std::make_unique<Sampler>(request.params);
  s->stop = std::make_unique<StopMatcher>(request.params.stop);
  s->decoder = std::make_unique<IncrementalDecoder>(tokenizer_, /*skip_special=*/true);
  s->history = request.prompt_tokens;
  s->out.prompt_tokens = static_cast<int32_t>(request.prompt_tokens.size());
  s->req = std::move(request);
  s->callback = std::move(callback);
  s->added = Clock::now();
  int64_t id = s->id;
  waiting_.push_back(std::move(s));
  return id;
}

void GenerationEngine::Cancel(int64_t id) {
  for (auto& s : waiting_) {
    if (s->id == id) s->cancel_requested = true;
  }
  for (auto& s : running_) {
    if (s->id == id) s->cancel_requested = true;
  }
}

void GenerationEngine::Admit() {
  // Cancelled waiting sequences finish without ever taking a slot.
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->cancel_requested) {
      Finish(**it, FinishReason::kCancelled);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  while (!waiting_.empty() && cache_.num_free() > 0 && static_cast<int32_t>(running_.size()) < options_.max_batch) {
    auto slot = cache_.Acquire();
    if (!slot.ok()) break;
    std::unique_ptr<Sequence> s = std::move(waiting_.front());
    waiting_.pop_front();
    s->slot = *slot;
    s->out.queue_seconds = SecondsSince(s->added);
    running_.push_back(std::move(s));
  }
}

void GenerationEngine::Finish(Sequence& s, FinishReason reason, Status status) {
  if (s.out.finish_reason != FinishReason::kNone) return;
  // Text the decoder or the stop matcher still holds belongs to the output,
  // unless a stop string ended it.
  if ((reason == FinishReason::kLength || reason == FinishReason::kStop) && !s.stop_string_hit) {
    StopMatcher::Result r = s.stop->Push(s.decoder->Finish());
    std::string rest = r.stopped ? r.emit : r.emit + s.stop->Flush();
    s.out.text += rest;
    s.pending.new_text += rest;
  }
  s.out.finish_reason = reason;
  s.out.status = std::move(status);
  s.out.total_seconds = SecondsSince(s.added);
  s.pending.done = true;
  s.pending.id = s.id;
  s.pending.output = &s.out;
  if (s.callback) s.callback(s.pending);
  s.pending = GenerationEvent();
}

void GenerationEngine::Consume(Sequence& s, const float* logits) {
  const int32_t vocab = static_cast<int32_t>(model_.config().vocab_size);
  SampleResult r = s.sampler->Sample(logits, vocab, s.history);
  if (s.out.tokens.empty()) s.out.time_to_first_token_s = SecondsSince(s.added);
  s.out.tokens.push_back(r.token);
  if (s.req.params.logprobs) s.out.logprobs.push_back(r.logprob);
  s.history.push_back(r.token);
  s.pending.new_tokens.push_back(r.token);
  const SamplingParams& p = s.req.params;
  const bool is_eos = !p.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), r.token) != eos_ids_.end();
  const bool is_stop_id =
      std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), r.token) != p.stop_token_ids.end();
  if (is_eos || is_stop_id) {
    Finish(s, FinishReason::kStop);
    return;
  }
  StopMatcher::Result m = s.stop->Push(s.decoder->Push(r.token));
  s.out.text += m.emit;
  s.pending.new_text += m.emit;
  if (m.stopped) {
    s.stop_string_hit = true;
    Finish(s, FinishReason::kStop);
  } else if (static_cast<int32_t>(s.out.tokens.size()) >= p.max_new_tokens) {
    Finish(s, FinishReason::kLength);
  }
}

void GenerationEngine::RunGroup(const std::vector<Sequence*>& group, bool prefill) {
  std::vector<SeqStep> steps;
  for (Sequence* s : group) {
    SeqStep st;
    st.slot = s->slot;
    st.tokens = prefill ? s->req.prompt_tokens : std::vector<int32_t>{s->out.tokens.back()};
    st.delta = s->req.delta.get();
    steps.push_back(std::move(st));
  }
  StatusOr<at::Tensor> logits = model_.Step(*group.front()->req.weights, cache_, steps);
  at::Tensor host;
  if (logits.ok()) {
    try {
      host = logits->to(at::kCPU).contiguous();
    } catch (const std::exception& e) {
      logits = StatusFromException(e, "model step");
    }
  }
  if (!logits.ok()) {
    if (group.size() > 1) {
      // One sequence's failure (say, its delta) must not fail the others: run
      // each alone. The failed step advanced no cache length, so the retry
      // rewrites the same positions.
      for (Sequence* s : group) RunGroup({s}, prefill);
      return;
    }
    Finish(*group.front(), FinishReason::kError, logits.status());
    return;
  }
  const float* data = host.data_ptr<float>();
  const int64_t vocab = host.size(1);
  for (size_t i = 0; i < group.size(); ++i) {
    group[i]->prefilled = true;
    try {
      Consume(*group[i], data + i * vocab);
    } catch (const std::exception& e) {
      Finish(*group[i], FinishReason::kError, StatusFromException(e, "sampling"));
    }
  }
}

void GenerationEngine::Reap() {
  for (auto it = running_.begin(); it != running_.end();) {
    Sequence& s = **it;
    if (s.out.finish_reason == FinishReason::kNone && s.cancel_requested) {
      Finish(s, FinishReason::kCancelled);
    }
    if (s.out.finish_reason != FinishReason::kNone) {
      cache_.Release(s.slot);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

void GenerationEngine::Step() {
  Reap();
  Admit();
  // Group by weight set: prefill new sequences, then decode the others.
  for (bool prefill : {true, false}) {
    std::map<const ModelWeights*, std::vector<Sequence*>> groups;
    for (auto& s : running_) {
      if (s->out.finish_reason != FinishReason::kNone || s->cancel_requested) continue;
      if (s->prefilled == !prefill) groups[s->req.weights.get()].push_back(s.get());
    }
    // Prefill in slot order so consecutive slots attend through views.
    for (auto& [w, group] : groups) {
      std::sort(group.begin(), group.end(), [](Sequence* a, Sequence* b) { return a->slot < b->slot; });
      if (prefill) {
        // Sequences of very different prompt lengths waste padded compute; run
        // each prompt on its own when lengths differ by more than 2x.
        std::vector<Sequence*> batch;
        size_t lo = SIZE_MAX, hi = 0;
        for (Sequence* s : group) {
          size_t n = s->req.prompt_tokens.size();
          size_t nlo = std::min(lo, n), nhi = std::max(hi, n);
          if (!batch.empty() && nhi > 2 * nlo) {
            RunGroup(batch, true);
            batch.clear();
            nlo = nhi = n;
          }
          batch.push_back(s);
          lo = nlo;
          hi = nhi;
        }
        if (!batch.empty()) RunGroup(batch, true);
      } else {
        RunGroup(group, false);
      }
    }
  }
  for (auto& s : running_) {
    if (s->out.finish_reason == FinishReason::kNone && s->callback &&
        (!s->pending.new_text.empty() || !s->pending.new_tokens.empty())) {
      s->pending.id = s->id;
      s->pending.output = &s->out;
      s->callback(s->pending);
    }
    s->pending = GenerationEvent();
  }
  Reap();
}

StatusOr<std::vector<GenerationOutput>> GenerateAll(const Transformer& model, const Tokenizer& tokenizer,
                                                    KvCache& cache, std::vector<int32_t> eos_ids,
                                                    std::vector<GenerationRequest> requests, EngineOptions options) {
  GenerationEngine engine(model, tokenizer, cache, std::move(eos_ids), options);
  std::vector<GenerationOutput> outputs(requests.size());
  std::map<int64_t, size_t> index;
  for (size_t i = 0; i < requests.size(); ++i) {
    auto id = engine.Add(std::move(requests[i]), [&outputs, &index](const GenerationEvent& e) {
      if (e.done) outputs[index.at(e.id)] = *e.output;
    });
    if (!id.ok()) return Annotate(id.status(), absl::StrCat("request ", i));
    index[*id] = i;
  }
  while (engine.HasWork()) engine.Step();
  return outputs;
}

std::vector<int32_t> EosIds(const ModelConfig& config, const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  for (int64_t id : config.eos_token_ids) ids.push_back(static_cast<int32_t>(id));
  for (int32_t id : tokenizer.eos_ids()) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

}  // namespace skillpack
