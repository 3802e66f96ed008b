// The intra-op thread default: physical cores in the affinity mask, capped by a
// cgroup quota; the quota's parser on cgroup v2/v1 texts.
#include "core/cpu_threads.h"

#include <sched.h>

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

namespace skillpack {
namespace {

TEST(ParseCgroupCpuMaxTest, QuotaOverPeriod) {
  EXPECT_EQ(ParseCgroupCpuMax("150000 100000\n"), 1.5);
  EXPECT_EQ(ParseCgroupCpuMax("200000 100000"), 2.0);
  EXPECT_EQ(ParseCgroupCpuMax("max 100000\n"), std::nullopt) << "v2: no quota";
  EXPECT_EQ(ParseCgroupCpuMax("-1 100000"), std::nullopt) << "v1: no quota";
  EXPECT_EQ(ParseCgroupCpuMax(""), std::nullopt);
  EXPECT_EQ(ParseCgroupCpuMax("100000"), std::nullopt);
  EXPECT_EQ(ParseCgroupCpuMax("1 2 3"), std::nullopt);
  EXPECT_EQ(ParseCgroupCpuMax("x 100000"), std::nullopt);
  EXPECT_EQ(ParseCgroupCpuMax("100000 0"), std::nullopt);
}

TEST(CpuThreadsTest, DefaultIsTheCoresThisProcessMayRunOn) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  ASSERT_EQ(sched_getaffinity(0, sizeof(mask), &mask), 0);
  const int cores = CpuCoresAvailable();
  EXPECT_GE(cores, 1);
  EXPECT_LE(cores, CPU_COUNT(&mask));
  EXPECT_EQ(SetIntraOpThreads(0), cores);
  EXPECT_EQ(at::get_num_threads(), cores);
  EXPECT_EQ(SetIntraOpThreads(1), 1);
  EXPECT_EQ(at::get_num_threads(), 1);
}

// OpenBLAS keeps its own pool; it must follow the count too (on this project's
// machines libtorch's BLAS is Debian's OpenBLAS, scripts/install-deps.sh).
TEST(CpuThreadsTest, OpenBlasFollowsTheCount) {
  if (!BlasThreads().has_value()) GTEST_SKIP() << "libtorch's BLAS here is not OpenBLAS";
  SetIntraOpThreads(1);
  EXPECT_EQ(BlasThreads(), 1);
  SetIntraOpThreads(3);
  EXPECT_EQ(BlasThreads(), 3) << "more threads than at load";
  SetIntraOpThreads(0);
  EXPECT_EQ(BlasThreads(), CpuCoresAvailable());
}

TEST(CpuThreadsTest, FollowsTheAffinityMask) {
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  EXPECT_EQ(CpuCoresAvailable(), 1) << "one CPU allowed";
  ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
}

}  // namespace
}  // namespace skillpack
