#include "core/omp_wait_policy.h"

#include <unistd.h>

#include <cstdlib>
#include <utility>
#include <vector>

namespace skillpack {
namespace {

// Sets each variable the environment lacks and re-executes this program if it
// set any. Returns only when no re-execution happened.
void ReexecWithDefaults(char** argv, const std::vector<std::pair<const char*, const char*>>& defaults) {
  std::vector<const char*> added;
  for (const auto& [name, value] : defaults) {
    if (std::getenv(name) != nullptr) continue;
    if (setenv(name, value, 1) != 0) break;
    added.push_back(name);
  }
  if (added.empty()) return;
  execv("/proc/self/exe", argv);
  // The exec failed: carry on with the defaults the libraries loaded with, and
  // do not tell a child process that they were chosen.
  for (const char* name : added) unsetenv(name);
}

}  // namespace

void ReexecWithPassiveOmpWaitUnlessSet(char** argv) { ReexecWithDefaults(argv, {{"OMP_WAIT_POLICY", "PASSIVE"}}); }

void ReexecWithPassiveServerWaitsUnlessSet(char** argv) {
  ReexecWithDefaults(argv, {{"OMP_WAIT_POLICY", "PASSIVE"}, {"OPENBLAS_THREAD_TIMEOUT", kServerOpenBlasThreadTimeout}});
}

}  // namespace skillpack
