// scripts/sanitize.sh tsan builds this twice before the tree's tests: two
// threads increment a counter under absl::Mutex. Against Debian's abseil
// (not built with TSan) ThreadSanitizer must report a race, since it sees
// none of the Mutex's lock and unlock; against the instrumented abseil of
// scripts/build-sanitized-abseil.sh it must report nothing. The first shows
// the check can fail, the second that TSan now sees absl's locks.
#include <thread>

#include "absl/synchronization/mutex.h"

int main() {
  absl::Mutex mu;
  long counter = 0;
  auto work = [&] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&mu);
      ++counter;
    }
  };
  std::thread a(work);
  std::thread b(work);
  a.join();
  b.join();
  return counter == 2000 ? 0 : 1;
}
