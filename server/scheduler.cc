#include "server/scheduler.h"

#include <algorithm>

#include "core/kv_cache.h"
#include "core/model.h"
#include "server/server_metrics.h"

namespace skillpack {

// ---------------------------------------------------------------------------
// RequestState

bool RequestState::Wait(absl::Duration timeout, std::vector<StreamChunk>* chunks) {
  absl::MutexLock lock(&mu_);
  if (!done_ && chunks_.empty()) cv_.WaitWithTimeout(&mu_, timeout);
  return TakeLocked(chunks);
}

bool RequestState::Poll(std::vector<StreamChunk>* chunks) {
  absl::MutexLock lock(&mu_);
  return TakeLocked(chunks);
}

bool RequestState::TakeLocked(std::vector<StreamChunk>* chunks) {
  if (chunks) {
    for (StreamChunk& c : chunks_) chunks->push_back(std::move(c));
  }
  chunks_.clear();
  return done_;
}

void RequestState::SetListener(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    listener_ = std::make_shared<const std::function<void()>>(std::move(fn));
  }
  Notify();
}

void RequestState::Notify() {
  std::shared_ptr<const std::function<void()>> fn;
  {
    absl::MutexLock lock(&mu_);
    fn = listener_;
  }
  if (fn) (*fn)();
}

GenerationOutput RequestState::output() const {
  absl::MutexLock lock(&mu_);
  return output_;
}

CancelCause RequestState::cancel_cause() const {
  absl::MutexLock lock(&mu_);
  return cause_;
}

void RequestState::Push(const GenerationEvent& e) {
  std::shared_ptr<const std::function<void()>> listener;
  {
    absl::MutexLock lock(&mu_);
    const bool chunk = stream_ && (!e.new_text.empty() || !e.new_tokens.empty());
    if (chunk) {
      StreamChunk c;
      c.text = e.new_text;
      c.tokens = e.new_tokens;
      const std::vector<float>& lp = e.output->logprobs;
      if (lp.size() >= e.new_tokens.size()) c.logprobs.assign(lp.end() - e.new_tokens.size(), lp.end());
      chunks_.push_back(std::move(c));
    }
    if (e.done) {
      output_ = *e.output;
      done_ = true;
    }
    if (!chunk && !e.done) return;  // nothing a waiter would see
    cv_.SignalAll();
    listener = listener_;
  }
  if (listener) (*listener)();
}

void RequestState::FinishWithout(FinishReason reason, Status status) {
  {
    absl::MutexLock lock(&mu_);
    output_.finish_reason = reason;
    output_.status = std::move(status);
    output_.prompt_tokens = static_cast<int32_t>(request_.prompt_tokens.size());
    done_ = true;
    cv_.SignalAll();
  }
  Notify();
}

bool RequestState::RequestCancel(CancelCause cause) {
  absl::MutexLock lock(&mu_);
  cancel_requested_ = true;
  if (cause_ != CancelCause::kNone) return false;
  cause_ = cause;
  return true;
}

// ---------------------------------------------------------------------------
// Scheduler

std::unique_ptr<Scheduler> Scheduler::Create(const Transformer& model, const Tokenizer& tokenizer,
                                             std::unique_ptr<KvCache> cache, std::vector<int32_t> eos_ids,
                                             SchedulerOptions options, ServerMetrics* metrics) {
  std::unique_ptr<Scheduler> s(new Scheduler(model, tokenizer, std::move(cache), std::move(eos_ids), options, metrics));
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

Scheduler::Scheduler(const Transformer& model, const Tokenizer& tokenizer, std::unique_ptr<KvCache> cache,
                     std::vector<int32_t> eos_ids, SchedulerOptions options, ServerMetrics* metrics)
    : model_(model),
      tokenizer_(tokenizer),
      cache_(std::move(cache)),
      options_(options),
      metrics_(metrics),
      context_limit_(std::min<int64_t>(cache_->max_seq_len(), model.config().max_position_embeddings)) {
  EngineOptions eo;
  eo.max_batch = options.max_running;
  engine_ = std::make_unique<GenerationEngine>(model_, tokenizer_, *cache_, std::move(eos_ids), eo);
  stats_.kv_slots_total = static_cast<int32_t>(cache_->num_slots());
  stats_.kv_slots_free = static_cast<int32_t>(cache_->num_free());
}

Scheduler::~Scheduler() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  thread_.join();
  engine_.reset();  // releases any slot still held before the cache goes
}

Status Scheduler::Validate(const GenerationRequest& r) const {
  const ModelConfig& c = model_.config();
  if (r.prompt_tokens.empty()) return absl::InvalidArgumentError("input: the prompt has no tokens");
  for (size_t i = 0; i < r.prompt_tokens.size(); ++i) {
    const int32_t t = r.prompt_tokens[i];
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens.ids[", i, "]: token id ", t, " out of range [0, ", c.vocab_size, ")"));
    }
  }
  Status s = ValidateSamplingParams(r.params, static_cast<int32_t>(c.vocab_size));
  if (!s.ok()) return Annotate(s, "sampling");
  const int64_t need = static_cast<int64_t>(r.prompt_tokens.size()) + r.params.max_new_tokens;
  if (need > context_limit_) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.max_new_tokens: prompt of ", r.prompt_tokens.size(),
                                                   " tokens plus max_new_tokens ", r.params.max_new_tokens,
                                                   " exceeds the context length ", context_limit_));
  }
  return absl::OkStatus();
}

StatusOr<std::shared_ptr<RequestState>> Scheduler::Submit(GenerationRequest request, absl::Time deadline, bool stream) {
  auto r = std::make_shared<RequestState>(stream, deadline);
  r->request_ = std::move(request);
  absl::MutexLock lock(&mu_);
  if (draining_ || stop_) return absl::UnavailableError("server is shutting down");
  const size_t limit = static_cast<size_t>(options_.max_running) + static_cast<size_t>(options_.max_queued);
  if (accepted_.size() >= limit) {
    return absl::ResourceExhaustedError(
        absl::StrCat("server busy: ", accepted_.size(), " requests running or queued (limit ", limit, ")"));
  }
  accepted_.push_back(r);
  incoming_.push_back(r);
  ++stats_.requests_total;
  cv_.SignalAll();
  return r;
}

void Scheduler::Cancel(const std::shared_ptr<RequestState>& r, CancelCause cause) {
  r->RequestCancel(cause);
  absl::MutexLock lock(&mu_);
  cancel_pending_ = true;
  cv_.SignalAll();
}

void Scheduler::StartDraining() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  stats_.draining = true;
}

bool Scheduler::WaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (!accepted_.empty()) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) return accepted_.empty();
  }
  return true;
}

void Scheduler::CancelAll() {
  std::vector<std::shared_ptr<RequestState>> all;
  {
    absl::MutexLock lock(&mu_);
    all = accepted_;
  }
  for (const auto& r : all) Cancel(r, CancelCause::kShutdown);
}

SchedulerStats Scheduler::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Scheduler::Retire(const std::shared_ptr<RequestState>& r, const GenerationOutput& out) {
  absl::MutexLock lock(&mu_);
  accepted_.erase(std::remove(accepted_.begin(), accepted_.end(), r), accepted_.end());
  const int64_t n = static_cast<int64_t>(out.tokens.size());
  if (!out.tokens.empty()) {
    stats_.prompt_tokens_total += out.prompt_tokens;
    stats_.generated_tokens_total += n;
  }
  if (metrics_) metrics_->RecordFinished(FinishReasonName(out.finish_reason), out.prompt_tokens, n);
  if (metrics_ && !out.tokens.empty()) {
    metrics_->prompt_tokens.Increment(out.prompt_tokens);
    metrics_->generated_tokens.Increment(static_cast<double>(n));
    metrics_->queue_seconds.Observe(out.queue_seconds);
    metrics_->time_to_first_token_seconds.Observe(out.time_to_first_token_s);
    if (n > 1) {
      metrics_->time_per_output_token_seconds.Observe((out.total_seconds - out.time_to_first_token_s) /
                                                      static_cast<double>(n - 1));
    }
  }
  cv_.SignalAll();
}

void Scheduler::Loop() {
  while (true) {
    std::deque<std::shared_ptr<RequestState>> incoming;
    bool stop;
    {
      absl::MutexLock lock(&mu_);
      if (!engine_->HasWork() && incoming_.empty() && !cancel_pending_ && !stop_) {
        // Timeout: deadlines of queued requests are checked even when idle.
        cv_.WaitWithTimeout(&mu_, absl::Milliseconds(50));
      }
      incoming.swap(incoming_);
      cancel_pending_ = false;
      stop = stop_;
    }
    const absl::Time now = absl::Now();
    for (std::shared_ptr<RequestState>& r : incoming) {
      if (stop || r->cancel_requested_ || now >= r->deadline_) {
        if (now >= r->deadline_) r->RequestCancel(CancelCause::kDeadline);
        if (stop) r->RequestCancel(CancelCause::kShutdown);
        r->FinishWithout(FinishReason::kCancelled, absl::OkStatus());
        Retire(r, r->output());
        continue;
      }
      GenerationRequest req = r->request_;
      RequestState* raw = r.get();
      StatusOr<int64_t> id = engine_->Add(std::move(req), [this, raw](const GenerationEvent& e) {
        if (metrics_ && e.output) metrics_->ObserveSequenceTokens(e.id, e.output->tokens.size(), e.done);
        raw->Push(e);
        if (e.done) {
          auto it = active_.find(e.id);
          if (it == active_.end()) return;
          std::shared_ptr<RequestState> keep = std::move(it->second);
          active_.erase(it);
          Retire(keep, *e.output);
        }
      });
      if (!id.ok()) {
        r->FinishWithout(FinishReason::kError, id.status());
        Retire(r, r->output());
        continue;
      }
      r->engine_id_ = *id;
      active_[*id] = r;
    }
    for (auto& [id, r] : active_) {
      if (stop) r->RequestCancel(CancelCause::kShutdown);
      if (now >= r->deadline_) r->RequestCancel(CancelCause::kDeadline);
      if (r->cancel_requested_) engine_->Cancel(id);
    }
    if (engine_->HasWork()) {
      engine_->Step();
      if (metrics_) metrics_->batch_size.Observe(static_cast<double>(engine_->num_running()));
    }
    {
      absl::MutexLock lock(&mu_);
      stats_.running = static_cast<int32_t>(engine_->num_running());
      stats_.waiting = static_cast<int32_t>(engine_->num_waiting() + incoming_.size());
      stats_.kv_slots_free = static_cast<int32_t>(cache_->num_free());
      if (metrics_) {
        metrics_->running.Set(stats_.running);
        metrics_->waiting.Set(stats_.waiting);
        metrics_->SetKvSlots(stats_.kv_slots_free, cache_->num_slots());
      }
      if (stop && !engine_->HasWork() && incoming_.empty()) break;
    }
  }
}

}  // namespace skillpack
