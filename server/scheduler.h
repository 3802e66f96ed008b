// The scheduler: one engine thread drives a GenerationEngine (continuous
// batching over the KV cache, grouped by weight set); the transports hand
// requests over through a mutex-protected queue and follow each one through
// its RequestState (blocking in Wait, or told by its listener). Admission control (max running + max queued),
// cancellation (client gone, deadline passed, shutdown) that frees the KV
// slot at the next step boundary, and draining for graceful shutdown.
//
// Fairness: the engine admits waiting sequences first-come first-served and
// every step advances every running sequence of every weight-set group by one
// token, so no group can starve another.
#ifndef SKILLPACK_SERVER_SCHEDULER_H_
#define SKILLPACK_SERVER_SCHEDULER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/generator.h"
#include "core/status.h"
#include "core/tokenizer.h"

namespace skillpack {

class KvCache;
class ServerMetrics;
class Transformer;

// New output of a request since the previous chunk.
struct StreamChunk {
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // when the request asked for them
};

// Why a request was cancelled before it finished on its own.
enum class CancelCause { kNone, kClient, kDeadline, kShutdown };

// One request's life, shared between the handler that waits on it and the
// engine thread that fills it. Thread-safe.
class RequestState {
 public:
  explicit RequestState(bool stream, absl::Time deadline) : stream_(stream), deadline_(deadline) {}

  // Waits until new chunks arrive, the request finishes, or `timeout` passes.
  // Moves the chunks received so far into *chunks (when not null) and returns
  // whether the request has finished. Chunks are kept only for streams.
  bool Wait(absl::Duration timeout, std::vector<StreamChunk>* chunks) ABSL_LOCKS_EXCLUDED(mu_);
  // Wait() without waiting.
  bool Poll(std::vector<StreamChunk>* chunks) ABSL_LOCKS_EXCLUDED(mu_);

  // For a transport that is told when its client leaves (gRPC's callback
  // API) instead of blocking a thread in Wait(): `fn` is called each time new
  // chunks arrive and when the request finishes, on the engine thread (or
  // the thread of a cancel that finished it in the queue), never under the
  // state's lock, so it may call Poll(); and once from SetListener itself, so
  // nothing that happened before it is missed. `fn` must not block: it runs
  // on the engine thread. At most one listener; a second replaces the first.
  void SetListener(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);

  // The final output. REQUIRES: Wait() returned true.
  GenerationOutput output() const ABSL_LOCKS_EXCLUDED(mu_);
  // The cause recorded by the first Scheduler::Cancel (kNone if none).
  CancelCause cancel_cause() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Time deadline() const { return deadline_; }

 private:
  friend class Scheduler;
  void Push(const GenerationEvent& e) ABSL_LOCKS_EXCLUDED(mu_);
  // Calls the listener, if any. Outside mu_.
  void Notify() ABSL_LOCKS_EXCLUDED(mu_);
  bool TakeLocked(std::vector<StreamChunk>* chunks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Finishes a request the engine never ran (refused or cancelled in the queue).
  void FinishWithout(FinishReason reason, Status status) ABSL_LOCKS_EXCLUDED(mu_);
  // Records the first cancel cause; returns false if one was already set.
  bool RequestCancel(CancelCause cause) ABSL_LOCKS_EXCLUDED(mu_);

  const bool stream_;
  const absl::Time deadline_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::vector<StreamChunk> chunks_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  GenerationOutput output_ ABSL_GUARDED_BY(mu_);
  CancelCause cause_ ABSL_GUARDED_BY(mu_) = CancelCause::kNone;
  std::shared_ptr<const std::function<void()>> listener_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> cancel_requested_{false};
  // Engine thread only.
  GenerationRequest request_;
  int64_t engine_id_ = -1;
};

struct SchedulerOptions {
  int32_t max_running = 8;  // sequences decoded together (engine batch)
  int32_t max_queued = 64;  // accepted requests beyond those running
};

struct SchedulerStats {
  int32_t running = 0;  // holding a KV slot
  int32_t waiting = 0;  // accepted, no slot yet
  int32_t kv_slots_total = 0;
  int32_t kv_slots_free = 0;
  int64_t requests_total = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generated_tokens_total = 0;
  bool draining = false;
};

class Scheduler {
 public:
  // Starts the engine thread. `model` and `tokenizer` must outlive the
  // scheduler; `metrics` may be null.
  static std::unique_ptr<Scheduler> Create(const Transformer& model, const Tokenizer& tokenizer,
                                           std::unique_ptr<KvCache> cache, std::vector<int32_t> eos_ids,
                                           SchedulerOptions options, ServerMetrics* metrics);
  // Cancels whatever is left and joins the engine thread.
  ~Scheduler();

  // The checks GenerationEngine::Add makes, done on the caller's thread so
  // that a bad request is refused before it is queued: INVALID_ARGUMENT
  // naming the field.
  Status Validate(const GenerationRequest& request) const;

  // Hands a validated request to the engine thread. UNAVAILABLE once
  // draining; RESOURCE_EXHAUSTED when max_running + max_queued requests are
  // already accepted. The engine cancels the request once `deadline` passes.
  StatusOr<std::shared_ptr<RequestState>> Submit(GenerationRequest request, absl::Time deadline, bool stream)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Asks the engine thread to cancel `r`; its KV slot is freed at the next
  // step boundary and it finishes with FinishReason::kCancelled.
  void Cancel(const std::shared_ptr<RequestState>& r, CancelCause cause) ABSL_LOCKS_EXCLUDED(mu_);

  // Refuses new requests from now on (UNAVAILABLE).
  void StartDraining() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until no accepted request is left or `deadline` passes; returns
  // whether it is idle.
  bool WaitIdle(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels every accepted request (cause kShutdown).
  void CancelAll() ABSL_LOCKS_EXCLUDED(mu_);

  SchedulerStats Stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Scheduler(const Transformer& model, const Tokenizer& tokenizer, std::unique_ptr<KvCache> cache,
            std::vector<int32_t> eos_ids, SchedulerOptions options, ServerMetrics* metrics);
  void Loop();
  // Engine thread: a request left the system.
  void Retire(const std::shared_ptr<RequestState>& r, const GenerationOutput& out) ABSL_LOCKS_EXCLUDED(mu_);

  const Transformer& model_;
  const Tokenizer& tokenizer_;
  std::unique_ptr<KvCache> cache_;
  const SchedulerOptions options_;
  ServerMetrics* metrics_;
  const int64_t context_limit_;
  std::unique_ptr<GenerationEngine> engine_;  // engine thread only

  mutable absl::Mutex mu_;
  absl::CondVar cv_;  // signalled on new work, cancellation, retirement, stop
  std::deque<std::shared_ptr<RequestState>> incoming_ ABSL_GUARDED_BY(mu_);
  // Every accepted, unfinished request (for CancelAll and admission).
  std::vector<std::shared_ptr<RequestState>> accepted_ ABSL_GUARDED_BY(mu_);
  bool cancel_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  SchedulerStats stats_ ABSL_GUARDED_BY(mu_);

  // Engine thread only: requests in the engine by engine id.
  std::map<int64_t, std::shared_ptr<RequestState>> active_;
  std::thread thread_;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_SCHEDULER_H_
