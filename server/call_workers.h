// Threads for the blocking part of a gRPC call. The Inference service uses
// gRPC's callback API, whose handlers run on a few gRPC threads that must
// never block; what may take long (decoding and tokenizing a large prompt,
// routing, composing a cold pack set) runs here instead, each call on a
// thread of its own, so that a slow compose never delays another call's.
// The number running at once is bounded; the destructor waits for them all.
#ifndef SKILLPACK_SERVER_CALL_WORKERS_H_
#define SKILLPACK_SERVER_CALL_WORKERS_H_

#include <cstdint>
#include <functional>
#include <memory>

namespace skillpack {

class CallWorkers {
 public:
  // At most `max_running` functions run at once (>= 1).
  explicit CallWorkers(int32_t max_running);
  // Waits until every function started by TryRun has returned.
  ~CallWorkers();
  CallWorkers(const CallWorkers&) = delete;
  CallWorkers& operator=(const CallWorkers&) = delete;

  // Runs `fn` on a new thread; false, and `fn` is not run, when `max_running`
  // are running already or the thread cannot be started.
  bool TryRun(std::function<void()> fn);

  int32_t running() const;
  int32_t max_running() const { return max_running_; }

 private:
  struct Shared;
  const int32_t max_running_;
  // Shared with the threads, which outlive their last touch of `this`.
  const std::shared_ptr<Shared> shared_;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_CALL_WORKERS_H_
