#include "core/omp_wait_policy.h"

#include <unistd.h>

#include <cstdlib>

namespace skillpack {

void ReexecWithPassiveOmpWaitUnlessSet(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
  execv("/proc/self/exe", argv);
  // The exec failed: carry on with the default policy, and do not tell a
  // child process that the policy was chosen.
  unsetenv("OMP_WAIT_POLICY");
}

}  // namespace skillpack
