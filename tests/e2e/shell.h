// Running a shell command from an end-to-end test: its exit code and its
// stdout + stderr. No gRPC here, so tests of the CLI alone can use it too.
#ifndef SKILLPACK_TESTS_E2E_SHELL_H_
#define SKILLPACK_TESTS_E2E_SHELL_H_

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace skillpack {

// A shell command's exit code and output.
struct CommandResult {
  int exit_code = -1;  // -1: it could not run, or a signal ended it
  std::string output;  // stdout and stderr
};

inline CommandResult Shell(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace skillpack

#endif  // SKILLPACK_TESTS_E2E_SHELL_H_
