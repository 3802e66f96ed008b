#include "pack/allocate.h"

#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <random>
#include <vector>

namespace skillpack {
namespace {

TEST(AllocateBudgetTest, HandWorkedGreedyIsOptimal) {
  // Hull slopes: module 0: 6, 2, 0.5 per byte; module 1: 2, 0.5 per byte.
  std::vector<std::vector<AllocOption>> m = {{{0, 100}, {10, 40}, {20, 20}, {30, 15}}, {{0, 50}, {10, 30}, {20, 25}}};
  auto a = AllocateBudget(m, 30);
  ASSERT_TRUE(a.ok()) << a.status();
  // Best within 30 bytes: module 0 at 20 bytes (error 20) + module 1 at 10 (30).
  EXPECT_EQ(a->choice, (std::vector<size_t>{2, 1}));
  EXPECT_EQ(a->bytes, 30);
  EXPECT_DOUBLE_EQ(a->error, 50);
  // 9 bytes buy nothing; 10 buy module 0's steepest step.
  a = AllocateBudget(m, 9);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->choice, (std::vector<size_t>{0, 0}));
  a = AllocateBudget(m, 10);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->choice, (std::vector<size_t>{1, 0}));
}

TEST(AllocateBudgetTest, FillSpendsWhatTheHullStepsLeave) {
  // Module 0's hull jumps from 0 to 100 bytes; its off-hull option at 40
  // bytes is dominated on the hull but is what fits after module 1's step.
  std::vector<std::vector<AllocOption>> m = {{{0, 100}, {40, 70}, {100, 0}}, {{0, 10}, {20, 0}}};
  auto a = AllocateBudget(m, 60);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->choice, (std::vector<size_t>{1, 1}));
  EXPECT_EQ(a->bytes, 60);
  EXPECT_DOUBLE_EQ(a->error, 70);
}

TEST(AllocateBudgetTest, MatchesBruteForceOnConvexCurves) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    // 3 modules, 5 options each at 0, 10, ..., 40 bytes with convex decreasing errors.
    std::vector<std::vector<AllocOption>> m(3);
    for (auto& opts : m) {
      double e = 250 + rng() % 100, drop = 40 + rng() % 20;
      for (int i = 0; i < 5; ++i) {
        opts.push_back({10 * i, e});
        e -= drop;
        drop *= 0.3 + 0.6 * (rng() % 100) / 100.0;
      }
    }
    const int64_t budget = 10 * (rng() % 13);
    double best = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 5; ++j)
        for (int k = 0; k < 5; ++k)
          if (10 * (i + j + k) <= budget) best = std::min(best, m[0][i].error + m[1][j].error + m[2][k].error);
    auto a = AllocateBudget(m, budget);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_LE(a->bytes, budget);
    EXPECT_NEAR(a->error, best, 1e-9) << "trial " << trial;
  }
}

TEST(AllocateBudgetTest, Errors) {
  auto a = AllocateBudget({{{5, 1}, {10, 0}}, {{7, 3}}}, 11);
  ASSERT_EQ(a.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(a.status().message().find("12 bytes"), std::string::npos) << a.status();
  EXPECT_EQ(AllocateBudget({{}}, 10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AllocateBudget({{{-1, 0}}}, 10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AllocateBudget({{{1, -1}}}, 10).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace skillpack
