// SmallGemm against libtorch's linear on every row count it serves, awkward
// sizes (k not a multiple of 8 nor of the 256-column chunk, n not a multiple
// of the 12-row block), with and without bias, and on a column range.
#include "core/small_gemm.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace skillpack {
namespace {

TEST(SmallGemmTest, MatchesLinearForEveryRowCountAndShape) {
  if (!SmallGemmAvailable()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  at::manual_seed(3);
  for (int64_t m = 1; m <= kSmallGemmMaxRows; ++m) {
    for (int64_t k : {1, 7, 8, 9, 64, 130, 300, 523}) {
      for (int64_t n : {1, 5, 12, 13, 37}) {
        for (bool with_bias : {false, true}) {
          SCOPED_TRACE(absl::StrCat("m=", m, " k=", k, " n=", n, " bias=", with_bias));
          at::Tensor x = at::randn({m, k});
          at::Tensor w = at::randn({n, k});
          at::Tensor b = with_bias ? at::randn({n}) : at::Tensor();
          at::Tensor want = with_bias ? at::linear(x, w, b) : at::linear(x, w);
          at::Tensor got = at::full({m, n}, 12345.0f);
          SmallGemm(x.data_ptr<float>(), m, k, w.data_ptr<float>(), with_bias ? b.data_ptr<float>() : nullptr, 0, n,
                    got.data_ptr<float>(), n);
          EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-4)) << (got - want).abs().max().item<float>();
        }
      }
    }
  }
}

TEST(SmallGemmTest, WritesOnlyItsColumnRange) {
  if (!SmallGemmAvailable()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  at::manual_seed(4);
  const int64_t m = 8, k = 40, n = 50;
  at::Tensor x = at::randn({m, k});
  at::Tensor w = at::randn({n, k});
  at::Tensor want = at::linear(x, w);
  at::Tensor got = at::zeros({m, n});
  // Two ranges as two threads would get them, the first a whole number of blocks.
  SmallGemm(x.data_ptr<float>(), m, k, w.data_ptr<float>(), nullptr, 0, 24, got.data_ptr<float>(), n);
  EXPECT_TRUE(at::allclose(got.narrow(1, 0, 24), want.narrow(1, 0, 24), 1e-4, 1e-4));
  EXPECT_EQ(got.narrow(1, 24, n - 24).abs().sum().item<float>(), 0.0f) << "wrote outside [0, 24)";
  SmallGemm(x.data_ptr<float>(), m, k, w.data_ptr<float>(), nullptr, 24, n, got.data_ptr<float>(), n);
  EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-4));
}

TEST(SmallGemmTest, CanBeTurnedOff) {
  const bool cpu = SmallGemmAvailable();
  SetSmallGemmEnabled(false);
  EXPECT_FALSE(SmallGemmAvailable());
  SetSmallGemmEnabled(true);
  EXPECT_EQ(SmallGemmAvailable(), cpu);
}

}  // namespace
}  // namespace skillpack
