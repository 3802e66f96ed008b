// SmallGemm against libtorch's linear on every row count it serves, with each
// kernel this CPU runs (AVX-512 with each walk, and AVX2), awkward sizes (k
// not a multiple of 8 or 16, n not a multiple of a panel), rows of x further
// apart than k, with and without bias, and on a column range;
// SmallGemmAccumulate (y += x · w into scattered rows) against libtorch's
// matmul.
#include "core/small_gemm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/model.h"

namespace skillpack {
namespace {

// A kernel and the walk it runs (small_gemm.h).
struct Kernel {
  SmallGemmIsa isa;
  SmallGemmWalk walk;
  std::string Name() const { return absl::StrCat(SmallGemmIsaName(isa), " ", SmallGemmWalkName(walk)); }
  // Makes it the active one; false when this CPU cannot run it.
  bool Use() const {
    SetSmallGemmWalk(walk);
    return SetSmallGemmIsa(isa);
  }
};

// The kernels this CPU runs, each with each walk; the best kernel
// and walk are restored when the test ends.
std::vector<Kernel> RunnableKernels() {
  std::vector<Kernel> out;
  for (Kernel kernel :
       {Kernel{SmallGemmIsa::kAvx2, SmallGemmWalk::kKBlocks}, Kernel{SmallGemmIsa::kAvx2, SmallGemmWalk::kL2Lookahead},
        Kernel{SmallGemmIsa::kAvx512, SmallGemmWalk::kKBlocks},
        Kernel{SmallGemmIsa::kAvx512, SmallGemmWalk::kL2Lookahead}}) {
    if (kernel.Use()) out.push_back(kernel);
  }
  SetSmallGemmEnabled(true);
  SetSmallGemmWalk(SmallGemmBestWalk());
  return out;
}

class SmallGemmTest : public ::testing::Test {
 protected:
  void TearDown() override {
    SetSmallGemmEnabled(true);
    SetSmallGemmWalk(SmallGemmBestWalk());
  }
};

TEST_F(SmallGemmTest, MatchesLinearForEveryKernelRowCountAndShape) {
  const std::vector<Kernel> kernels = RunnableKernels();
  if (kernels.empty()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  at::manual_seed(3);
  for (const Kernel& kernel : kernels) {
    ASSERT_TRUE(kernel.Use());
    for (int64_t m = 1; m <= kSmallGemmMaxRows; ++m) {
      for (int64_t k : {1, 7, 8, 9, 15, 16, 17, 64, 130, 300, 523}) {
        for (int64_t n : {1, 5, 12, 13, 16, 23, 25, 37, 50, 100}) {
          for (bool with_bias : {false, true}) {
            SCOPED_TRACE(absl::StrCat(kernel.Name(), " m=", m, " k=", k, " n=", n, " bias=", with_bias));
            // Rows of x 3 floats further apart than k: the padding must be skipped.
            const int64_t ldx = k + 3;
            at::Tensor xp = at::randn({m, ldx});
            at::Tensor x = xp.narrow(1, 0, k);
            at::Tensor w = at::randn({n, k});
            at::Tensor b = with_bias ? at::randn({n}) : at::Tensor();
            at::Tensor want = with_bias ? at::linear(x, w, b) : at::linear(x, w);
            at::Tensor got = at::full({m, n}, 12345.0f);
            SmallGemm(xp.data_ptr<float>(), m, k, ldx, w.data_ptr<float>(), with_bias ? b.data_ptr<float>() : nullptr,
                      0, n, got.data_ptr<float>(), n);
            EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-4)) << (got - want).abs().max().item<float>();
          }
        }
      }
    }
  }
}

// Binary16 weights: the float32 sums over the weights as rounded to half.
TEST_F(SmallGemmTest, HalfWeightsMatchLinearOverTheRoundedWeights) {
  const std::vector<Kernel> kernels = RunnableKernels();
  if (kernels.empty()) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
  at::manual_seed(5);
  for (const Kernel& kernel : kernels) {
    ASSERT_TRUE(kernel.Use());
    for (int64_t m : {1, 2, 3, 4, 5, 8, 9, 13, 16}) {
      for (int64_t k : {1, 7, 8, 15, 16, 17, 33, 300, 523}) {
        for (int64_t n : {1, 12, 13, 16, 23, 25, 50}) {
          SCOPED_TRACE(absl::StrCat(kernel.Name(), " m=", m, " k=", k, " n=", n));
          const int64_t ldx = k + 5;
          at::Tensor xp = at::randn({m, ldx});
          at::Tensor x = xp.narrow(1, 0, k);
          at::Tensor wh = at::randn({n, k}).to(at::kHalf);
          at::Tensor b = at::randn({n});
          at::Tensor want = at::linear(x, wh.to(at::kFloat), b);
          at::Tensor got = at::full({m, n}, 12345.0f);
          SmallGemmF16(xp.data_ptr<float>(), m, k, ldx, reinterpret_cast<const uint16_t*>(wh.data_ptr<at::Half>()),
                       b.data_ptr<float>(), 0, n, got.data_ptr<float>(), n);
          EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-4)) << (got - want).abs().max().item<float>();
        }
      }
    }
  }
}

// Int8 codes: the float32 sums over the codes' values, the full range
// -128..127 included (sign extension), every row count and odd k (the masked
// and scalar tails read only k codes per row).
TEST_F(SmallGemmTest, Int8WeightsMatchLinearOverTheCodes) {
  const std::vector<Kernel> kernels = RunnableKernels();
  if (kernels.empty()) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
  at::manual_seed(6);
  for (const Kernel& kernel : kernels) {
    ASSERT_TRUE(kernel.Use());
    for (int64_t m = 1; m <= kSmallGemmMaxRows; ++m) {
      for (int64_t k : {1, 7, 8, 15, 16, 17, 33, 300, 523}) {
        for (int64_t n : {1, 12, 13, 16, 23, 25, 50}) {
          SCOPED_TRACE(absl::StrCat(kernel.Name(), " m=", m, " k=", k, " n=", n));
          const int64_t ldx = k + 5;
          at::Tensor xp = at::randn({m, ldx});
          at::Tensor x = xp.narrow(1, 0, k);
          at::Tensor wq = at::randint(-128, 128, {n, k}, at::kChar);
          wq.view({-1})[0] = -128;
          wq.view({-1})[n * k - 1] = 127;
          at::Tensor b = at::randn({n});
          at::Tensor want = at::linear(x, wq.to(at::kFloat), b);
          at::Tensor got = at::full({m, n}, 12345.0f);
          SmallGemmI8(xp.data_ptr<float>(), m, k, ldx, wq.data_ptr<int8_t>(), b.data_ptr<float>(), 0, n,
                      got.data_ptr<float>(), n);
          // Sums of up to 523 products of magnitude ~100: rounding relative to the largest.
          EXPECT_LE((got - want).abs().max().item<double>(), 1e-5 * (1 + want.abs().max().item<double>()));
        }
      }
    }
  }
}

// SmallGemmAccumulate (y_rows += x · w, w [k, n] row-major) against y + x · w
// in libtorch, for float32 weights, binary16 ones (over the rounded weights)
// and int8 codes (the full range), every kernel, rows 1..16 and 20 (the tiles
// of 4 rows and their remainders), k from 1 to past a rank and to a hidden
// size (the narrow kernel's interleaved k steps and the last rows it reads
// through a padded copy), n around every vector width and tile (8, 16, 64
// columns), the narrow kernels' limits (32 on AVX2, 64 on AVX-512) and their
// tails; y's rows are scattered through a larger buffer, which the kernel must
// not touch elsewhere.
TEST_F(SmallGemmTest, AccumulateAddsXTimesWToScatteredRows) {
  const std::vector<Kernel> kernels = RunnableKernels();
  if (kernels.empty()) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
  at::manual_seed(8);
  for (const Kernel& kernel : kernels) {
    ASSERT_TRUE(kernel.Use());
    for (at::ScalarType type : {at::kFloat, at::kHalf, at::kChar}) {
      for (int64_t m : {1, 2, 3, 4, 5, 7, 8, 9, 16, 20}) {
        for (int64_t k : {1, 2, 7, 16, 33, 259}) {
          for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 49, 63, 64, 65, 130}) {
            SCOPED_TRACE(absl::StrCat(kernel.Name(), " ", c10::toString(type), " m=", m, " k=", k, " n=", n));
            const int64_t ldx = k + 3;
            at::Tensor xp = at::randn({m, ldx});
            at::Tensor x = xp.narrow(1, 0, k);
            at::Tensor w = type == at::kChar ? at::randint(-128, 128, {k, n}, at::kChar) : at::randn({k, n}).to(type);
            if (type == at::kChar) {
              w.view({-1})[0] = -128;
              w.view({-1})[k * n - 1] = 127;
            }
            // Row i of y at buffer row 2·(m - 1 - i) + 1: reversed, with untouched rows between.
            at::Tensor buffer = at::randn({2 * m + 1, n});
            at::Tensor before = buffer.clone();
            std::vector<float*> rows;
            for (int64_t i = 0; i < m; ++i) rows.push_back(buffer.data_ptr<float>() + (2 * (m - 1 - i) + 1) * n);
            const float* xd = xp.data_ptr<float>();
            if (type == at::kFloat) {
              SmallGemmAccumulate(xd, m, k, ldx, w.data_ptr<float>(), n, rows.data());
            } else if (type == at::kHalf) {
              SmallGemmAccumulateF16(xd, m, k, ldx, reinterpret_cast<const uint16_t*>(w.data_ptr<at::Half>()), n,
                                     rows.data());
            } else {
              SmallGemmAccumulateI8(xd, m, k, ldx, w.data_ptr<int8_t>(), n, rows.data());
            }
            at::Tensor target = at::arange(2 * m - 1, -1, -2, at::kLong);  // buffer rows of y rows 0..m-1
            at::Tensor want = before.index_select(0, target) + x.matmul(w.to(at::kFloat));
            at::Tensor got = buffer.index_select(0, target);
            EXPECT_LE((got - want).abs().max().item<double>(), 1e-5 * (1 + want.abs().max().item<double>()));
            at::Tensor others = at::arange(0, 2 * m + 1, 2, at::kLong);
            EXPECT_TRUE(at::equal(buffer.index_select(0, others), before.index_select(0, others)));
          }
        }
      }
    }
  }
}

TEST_F(SmallGemmTest, WritesOnlyItsColumnRange) {
  const std::vector<Kernel> kernels = RunnableKernels();
  if (kernels.empty()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  at::manual_seed(4);
  const int64_t m = 11, k = 40, n = 70;
  at::Tensor x = at::randn({m, k});
  at::Tensor w = at::randn({n, k});
  at::Tensor want = at::linear(x, w);
  for (const Kernel& kernel : kernels) {
    SCOPED_TRACE(kernel.Name());
    ASSERT_TRUE(kernel.Use());
    at::Tensor got = at::zeros({m, n});
    // Two ranges as two threads would get them, the first a whole number of blocks.
    SmallGemm(x.data_ptr<float>(), m, k, k, w.data_ptr<float>(), nullptr, 0, kSmallGemmBlock, got.data_ptr<float>(), n);
    EXPECT_TRUE(at::allclose(got.narrow(1, 0, kSmallGemmBlock), want.narrow(1, 0, kSmallGemmBlock), 1e-4, 1e-4));
    EXPECT_EQ(got.narrow(1, kSmallGemmBlock, n - kSmallGemmBlock).abs().sum().item<float>(), 0.0f)
        << "wrote outside [0, " << kSmallGemmBlock << ")";
    SmallGemm(x.data_ptr<float>(), m, k, k, w.data_ptr<float>(), nullptr, kSmallGemmBlock, n, got.data_ptr<float>(), n);
    EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-4));
  }
}

// The model's linear (LinearForward) on every row count: 1 to kSmallGemmMaxRows
// run the kernel, more run BLAS; x of any leading shape ([rows, k] or [B, T, k]),
// with and without bias, equal to libtorch's linear, the kernel on and off.
TEST_F(SmallGemmTest, LinearForwardMatchesTorchLinearOnEveryRowCount) {
  at::manual_seed(5);
  const int64_t k = 300, n = 50;
  at::Tensor w = at::randn({n, k});
  at::Tensor b = at::randn({n});
  for (int64_t rows : {int64_t{1}, int64_t{2}, int64_t{7}, kSmallGemmMaxRows, kSmallGemmMaxRows + 1}) {
    for (bool kernel : {true, false}) {
      SCOPED_TRACE(absl::StrCat("rows ", rows, kernel ? ", kernel" : ", BLAS"));
      SetSmallGemmEnabled(kernel);
      at::Tensor x = at::randn({rows, 1, k});
      at::Tensor got = LinearForward(x, w, b);
      EXPECT_EQ(got.sizes(), (std::vector<int64_t>{rows, 1, n}));
      EXPECT_TRUE(at::allclose(got, at::linear(x, w, b), 1e-4, 1e-4));
      at::Tensor flat = x.view({rows, k});
      EXPECT_TRUE(at::allclose(LinearForward(flat, w, at::Tensor()), at::linear(flat, w), 1e-4, 1e-4));
    }
  }
  // A layer large enough (> 2M weights) for the kernel to split its columns
  // across two intra-op threads: every column computed once.
  SetSmallGemmEnabled(true);
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  at::Tensor big = at::randn({2000, 1100});
  at::Tensor big_b = at::randn({2000});
  for (int64_t rows : {int64_t{1}, int64_t{8}, kSmallGemmMaxRows}) {
    SCOPED_TRACE(absl::StrCat("2000 x 1100 weights on 2 threads, rows ", rows));
    at::Tensor x = at::randn({rows, 1100});
    EXPECT_TRUE(at::allclose(LinearForward(x, big, big_b), at::linear(x, big, big_b), 1e-3, 1e-3));
  }
  at::set_num_threads(threads);
  SetSmallGemmEnabled(true);
}

TEST_F(SmallGemmTest, KernelChoice) {
  const SmallGemmIsa best = SmallGemmBestIsa();
  EXPECT_EQ(SmallGemmActiveIsa(), best);
  SetSmallGemmEnabled(false);
  EXPECT_FALSE(SmallGemmAvailable());
  EXPECT_EQ(SmallGemmActiveIsa(), SmallGemmIsa::kOff);
  SetSmallGemmEnabled(true);
  EXPECT_EQ(SmallGemmActiveIsa(), best);
  EXPECT_EQ(SmallGemmAvailable(), best != SmallGemmIsa::kOff);
  // A kernel the CPU lacks is refused and changes nothing.
  if (best != SmallGemmIsa::kAvx512) {
    EXPECT_FALSE(SetSmallGemmIsa(SmallGemmIsa::kAvx512));
    EXPECT_EQ(SmallGemmActiveIsa(), best);
  }
  EXPECT_TRUE(SetSmallGemmIsa(SmallGemmIsa::kOff));
  EXPECT_FALSE(SmallGemmAvailable());
}

// The walk follows the CPU as /proc/cpuinfo reads it: the L2 lookahead on AMD
// family 25 (0x19), k-blocks elsewhere; setting it changes only the walk.
TEST_F(SmallGemmTest, WalkChoice) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  if (!cpuinfo) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line, vendor;
  int family = -1;
  while (std::getline(cpuinfo, line) && (vendor.empty() || family < 0)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon + 2 > line.size()) continue;
    if (absl::StartsWith(line, "vendor_id")) vendor = line.substr(colon + 2);
    if (absl::StartsWith(line, "cpu family")) family = std::stoi(line.substr(colon + 2));
  }
  SCOPED_TRACE(absl::StrCat(vendor, " family ", family));
  const SmallGemmWalk want =
      vendor == "AuthenticAMD" && family == 25 ? SmallGemmWalk::kL2Lookahead : SmallGemmWalk::kKBlocks;
  EXPECT_EQ(SmallGemmBestWalk(), want);
  EXPECT_EQ(SmallGemmActiveWalk(), want);
  const SmallGemmIsa isa = SmallGemmActiveIsa();
  for (SmallGemmWalk walk : {SmallGemmWalk::kL2Lookahead, SmallGemmWalk::kKBlocks}) {
    SetSmallGemmWalk(walk);
    EXPECT_EQ(SmallGemmActiveWalk(), walk);
    EXPECT_EQ(SmallGemmActiveIsa(), isa);
  }
  EXPECT_STREQ(SmallGemmWalkName(SmallGemmWalk::kL2Lookahead), "l2_lookahead");
  EXPECT_STREQ(SmallGemmWalkName(SmallGemmWalk::kKBlocks), "k_blocks");
}

TEST_F(SmallGemmTest, RowStrideAvoidsMultiplesOfOneKiB) {
  for (int64_t k : {1, 7, 100, 255, 256, 512, 2048, 5632, 4096}) {
    const int64_t ld = SmallGemmRowStride(k);
    EXPECT_GE(ld, k) << k;
    EXPECT_NE((ld * 4) % 1024, 0) << k;
  }
  EXPECT_EQ(SmallGemmRowStride(300), 300) << "a stride that does not alias is kept";
}

}  // namespace
}  // namespace skillpack
