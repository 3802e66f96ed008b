// The e2e tests' support code without a server: Shell() and the timeout scale
// of sanitizer runs (SKILLPACK_TEST_TIMEOUT_SCALE, tests/e2e/shell.h).
#include "tests/e2e/shell.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>

namespace skillpack {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(ShellTest, ExitCodeAndOutput) {
  const CommandResult r = Shell("sh -c 'echo out; echo err >&2; exit 3'");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.output, "out\nerr\n");
}

TEST(TimeoutScaleTest, ParsesNumbersFromOneTo1000) {
  EXPECT_EQ(ParseTimeoutScale("1"), 1.0);
  EXPECT_EQ(ParseTimeoutScale("3"), 3.0);
  EXPECT_EQ(ParseTimeoutScale("2.5"), 2.5);
  EXPECT_EQ(ParseTimeoutScale("1000"), 1000.0);
  for (const char* bad :
       {"", "0", "0.5", "-3", "1001", "3x", " 3", "3 ", "x", "nan", "inf", "1e2", "0x10", "+3", "."}) {
    EXPECT_FALSE(ParseTimeoutScale(bad).has_value()) << '"' << bad << '"';
  }
}

// Whatever the run's scale (1 in a plain ctest, 3 under scripts/sanitize.sh
// asan), Scaled() multiplies by it and rounds up to whole milliseconds.
TEST(TimeoutScaleTest, ScaledMultipliesByTheScale) {
  const double scale = TimeoutScale();
  EXPECT_GE(scale, 1.0);
  EXPECT_EQ(Scaled(seconds(30)), milliseconds(static_cast<int64_t>(std::ceil(30000 * scale))));
  EXPECT_EQ(Scaled(milliseconds(1)).count(), static_cast<int64_t>(std::ceil(scale)));
  EXPECT_EQ(Scaled(std::chrono::microseconds(1)), milliseconds(1));
}

// A scale that is not a number ends the test binary with a message naming the
// variable and its value, rather than running with some other wait. (The
// threadsafe style re-runs this test in a new process, where TimeoutScale()
// has not read the variable yet.)
TEST(TimeoutScaleDeathTest, ABadValueStopsTheTests) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv(kTimeoutScaleEnv, "three", 1);
        TimeoutScale();
      },
      ::testing::ExitedWithCode(2), "SKILLPACK_TEST_TIMEOUT_SCALE=\"three\": expected a number from 1 to 1000");
}

}  // namespace
}  // namespace skillpack
