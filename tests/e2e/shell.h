// Running a shell command from an end-to-end test: its exit code and its
// stdout + stderr; and the scale of the e2e tests' waits. No gRPC here, so
// tests of the CLI alone can use it too.
#ifndef SKILLPACK_TESTS_E2E_SHELL_H_
#define SKILLPACK_TESTS_E2E_SHELL_H_

#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
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

// The e2e tests' waits for a server or CLI (start, exit after SIGTERM, health
// turning NOT_SERVING, load draining, an upload's .part file going away) are
// sized for the Release build. A sanitizer build runs the same binaries a few
// times slower, so scripts/sanitize.sh stretches every such wait by
// SKILLPACK_TEST_TIMEOUT_SCALE (asan 3, tsan 10); unset, it is 1. Deadlines
// that a test means to pass (a request that must hit DEADLINE_EXCEEDED) and
// the server's own timeouts stay as they are.
inline constexpr char kTimeoutScaleEnv[] = "SKILLPACK_TEST_TIMEOUT_SCALE";

// The scale in `text`: a decimal number from 1 to 1000, nothing else.
inline std::optional<double> ParseTimeoutScale(const std::string& text) {
  // Digits and a point only: strtod alone would also take spaces, signs, hex and exponents.
  if (text.empty() || text.find_first_not_of("0123456789.") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v) || v < 1 || v > 1000) return std::nullopt;
  return v;
}

// SKILLPACK_TEST_TIMEOUT_SCALE, read once; a value that is not a number from 1
// to 1000 ends the test binary with a message naming it.
inline double TimeoutScale() {
  static const double scale = [] {
    const char* env = std::getenv(kTimeoutScaleEnv);
    if (env == nullptr || *env == '\0') return 1.0;
    const std::optional<double> v = ParseTimeoutScale(env);
    if (!v) {
      std::fprintf(stderr, "%s=\"%s\": expected a number from 1 to 1000\n", kTimeoutScaleEnv, env);
      std::exit(2);
    }
    return *v;
  }();
  return scale;
}

// `d` stretched by TimeoutScale(), rounded up to whole milliseconds.
template <class Rep, class Period>
std::chrono::milliseconds Scaled(std::chrono::duration<Rep, Period> d) {
  const double ms = std::chrono::duration<double, std::milli>(d).count() * TimeoutScale();
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(ms)));
}

}  // namespace skillpack

#endif  // SKILLPACK_TESTS_E2E_SHELL_H_
