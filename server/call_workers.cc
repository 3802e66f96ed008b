#include "server/call_workers.h"

#include <algorithm>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace skillpack {

struct CallWorkers::Shared {
  absl::Mutex mu;
  int32_t running ABSL_GUARDED_BY(mu) = 0;
};

CallWorkers::CallWorkers(int32_t max_running)
    : max_running_(std::max<int32_t>(1, max_running)), shared_(std::make_shared<Shared>()) {}

CallWorkers::~CallWorkers() {
  absl::MutexLock lock(&shared_->mu);
  shared_->mu.Await(absl::Condition(
      +[](int32_t* running) { return *running == 0; }, &shared_->running));
}

bool CallWorkers::TryRun(std::function<void()> fn) {
  {
    absl::MutexLock lock(&shared_->mu);
    if (shared_->running >= max_running_) return false;
    ++shared_->running;
  }
  try {
    // The thread holds `shared` (not `this`): the destructor may return, and
    // the object go, as soon as the count reaches zero.
    // `fn` (and what it holds) is gone before the count drops.
    std::thread([shared = shared_, fn = std::move(fn)]() mutable {
      std::function<void()>(std::move(fn))();
      absl::MutexLock lock(&shared->mu);
      --shared->running;
    }).detach();
  } catch (const std::system_error&) {
    absl::MutexLock lock(&shared_->mu);
    --shared_->running;
    return false;
  }
  return true;
}

int32_t CallWorkers::running() const {
  absl::MutexLock lock(&shared_->mu);
  return shared_->running;
}

}  // namespace skillpack
