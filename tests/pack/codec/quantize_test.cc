#include "pack/codec/quantize.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "gtest/gtest.h"

namespace skillpack {
namespace {

// Per-element scale/zero tensors of q in stored column order.
at::Tensor ExpandGroups(const at::Tensor& per_group, int64_t gs, int64_t cols) {
  return per_group.to(at::kFloat).repeat_interleave(gs, 1).slice(1, 0, cols);
}

double OutputError(const at::Tensor& w, const at::Tensor& w_hat, const at::Tensor& x) {
  return at::matmul(w - w_hat, x).norm().item<double>();
}

// Correlated calibration inputs X [cols, n] = diag(c) (A Z): a random mixing
// A, and a few channels with much larger variance.
at::Tensor CorrelatedInputs(int64_t cols, int64_t n, at::Generator& gen) {
  const at::Tensor z = at::randn({cols, n}, gen);
  const at::Tensor a = at::randn({cols, cols}, gen) / std::sqrt(static_cast<double>(cols)) + at::eye(cols);
  at::Tensor c = at::ones({cols});
  c.slice(0, 0, cols, 17).fill_(8.0);  // every 17th channel is loud
  return c.unsqueeze(1) * at::matmul(a, z);
}

at::Tensor HessianOf(const at::Tensor& x /* [cols, n] */) {
  HessianAccumulator acc(x.size(0));
  const at::Tensor xt = x.t();
  for (int64_t s = 0; s < xt.size(0); s += 500) {
    EXPECT_TRUE(acc.Add(xt.slice(0, s, std::min(s + 500, xt.size(0)))).ok());
  }
  EXPECT_EQ(acc.count(), x.size(1));
  return acc.Hessian();
}

TEST(QuantizeRtnTest, ErrorWithinHalfStepEveryWidth) {
  at::Generator gen = at::detail::createCPUGenerator(7);
  at::Tensor w = at::randn({37, 300}, gen) * 0.02;
  w.slice(0, 0, 5).add_(0.05);   // rows entirely positive-ish
  w.slice(0, 5, 10).sub_(0.05);  // rows entirely negative-ish
  w.slice(0, 10, 11).zero_();    // an all-zero row
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t gs : {128, 64, 1000}) {
      auto q = QuantizeRtn(w, bits, gs);
      ASSERT_TRUE(q.ok()) << q.status();
      ASSERT_TRUE(ValidateQuantizedMatrix(*q).ok());
      EXPECT_EQ(q->num_groups(), (300 + gs - 1) / gs);
      EXPECT_FALSE(q->perm.defined());
      const int64_t maxq = (1 << bits) - 1;
      EXPECT_LE(q->codes.max().item<int64_t>(), maxq);
      EXPECT_LE(q->zeros.max().item<int64_t>(), maxq);
      const at::Tensor scale = ExpandGroups(q->scales, gs, 300);
      const at::Tensor err = (Dequantize(*q) - w).abs();
      const at::Tensor bound = scale * (0.5 + 1e-5) + 1e-9;
      EXPECT_TRUE((err <= bound).all().item<bool>())
          << "bits=" << bits << " gs=" << gs << " worst excess " << (err - bound).max().item<double>();
      // Zero is represented exactly.
      EXPECT_EQ(Dequantize(*q).slice(0, 10, 11).abs().max().item<float>(), 0.0f);
    }
  }
}

TEST(QuantizeRtnTest, BadArguments) {
  const at::Tensor w = at::randn({4, 8});
  EXPECT_EQ(QuantizeRtn(w, 5, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeRtn(w, 1, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeRtn(w, 4, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeRtn(at::randn({8}), 4, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeRtn(at::ones({4, 8}, at::kInt), 4, 4).status().code(), absl::StatusCode::kInvalidArgument);
  at::Tensor bad = w.clone();
  bad[1][2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(QuantizeRtn(bad, 4, 4).status().code(), absl::StatusCode::kInvalidArgument);
  bad[1][2] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(QuantizeRtn(bad, 4, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(QuantizeRtnTest, ValidateCatchesCorruption) {
  auto q = QuantizeRtn(at::randn({6, 10}), 3, 4);
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(ValidateQuantizedMatrix(*q).ok());
  QuantizedMatrix bad = *q;
  bad.codes = q->codes.clone();
  bad.codes[0][0] = 8;
  EXPECT_FALSE(ValidateQuantizedMatrix(bad).ok());
  bad = *q;
  bad.scales = q->scales.slice(1, 0, 2);
  EXPECT_FALSE(ValidateQuantizedMatrix(bad).ok());
  bad = *q;
  bad.perm = at::zeros({10}, at::kLong);
  EXPECT_FALSE(ValidateQuantizedMatrix(bad).ok());
  bad.perm = at::arange(10, at::kLong).flip(0);
  EXPECT_TRUE(ValidateQuantizedMatrix(bad).ok());
}

TEST(HessianAccumulatorTest, MatchesDirectFormula) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor x = at::randn({1000, 24}, gen);  // rows are input vectors
  HessianAccumulator acc(24);
  EXPECT_EQ(acc.Hessian().abs().sum().item<double>(), 0.0);
  ASSERT_TRUE(acc.Add(x.slice(0, 0, 300)).ok());
  // [batch, seq, cols] input.
  ASSERT_TRUE(acc.Add(x.slice(0, 300, 1000).reshape({7, 100, 24})).ok());
  EXPECT_EQ(acc.count(), 1000);
  const at::Tensor want = 2.0 * at::matmul(x.t(), x) / 1000.0;
  EXPECT_TRUE(at::allclose(acc.Hessian(), want, 1e-4, 1e-4));
  EXPECT_EQ(acc.Add(at::randn({5, 23})).code(), absl::StatusCode::kInvalidArgument);
  at::Tensor nan = at::randn({2, 24});
  nan[0][0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(acc.Add(nan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.count(), 1000);
}

TEST(QuantizeGptqTest, BeatsRtnOnCorrelatedInputs) {
  at::Generator gen = at::detail::createCPUGenerator(11);
  const int64_t rows = 96, cols = 256, n = 4096;
  const at::Tensor w = at::randn({rows, cols}, gen) * 0.05;
  const at::Tensor x = CorrelatedInputs(cols, n, gen);
  const at::Tensor h = HessianOf(x);
  for (int bits : {2, 3, 4}) {
    for (bool act_order : {true, false}) {
      QuantizeOptions opts;
      opts.bits = bits;
      opts.group_size = 64;
      opts.act_order = act_order;
      auto g = QuantizeGptq(w, h, opts);
      ASSERT_TRUE(g.ok()) << g.status();
      ASSERT_TRUE(ValidateQuantizedMatrix(*g).ok());
      EXPECT_EQ(g->perm.defined(), act_order);
      auto r = QuantizeRtn(w, bits, 64);
      ASSERT_TRUE(r.ok());
      const double eg = OutputError(w, Dequantize(*g), x);
      const double er = OutputError(w, Dequantize(*r), x);
      std::printf(
          "bits=%d act_order=%d  ||(W-Wq)X||: gptq %.4g rtn %.4g (ratio "
          "%.3f)\n",
          bits, act_order, eg, er, eg / er);
      // The default (act order) wins with a clear margin at every width.
      // Without act order, 2-bit GPTQ with dynamic groups is erratic (error
      // feedback pushes later columns of a group past the range fixed at its
      // first column, and 4 levels clip hard): here it loses to RTN at group
      // size 64, so only 3 and 4 bits are asserted for it.
      if (act_order || bits >= 3) {
        EXPECT_LT(eg, 0.9 * er) << "bits=" << bits << " act_order=" << act_order;
      }
    }
  }
}

TEST(QuantizeGptqTest, ActOrderPermutationIsUndoneByDequantize) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  const int64_t rows = 16, cols = 200;
  const at::Tensor w = at::randn({rows, cols}, gen);
  const at::Tensor x = CorrelatedInputs(cols, 1000, gen);
  QuantizeOptions opts;
  opts.bits = 8;
  opts.group_size = 64;  // last group has 8 columns
  opts.block_size = 48;  // groups straddle blocks
  auto q = QuantizeGptq(w, HessianOf(x), opts);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_TRUE(q->perm.defined());
  ASSERT_EQ(q->perm.scalar_type(), at::kLong);
  const at::Tensor sorted = std::get<0>(at::sort(q->perm));
  EXPECT_TRUE(at::equal(sorted, at::arange(cols, at::kLong)));
  EXPECT_FALSE(at::equal(q->perm, at::arange(cols, at::kLong)));
  const at::Tensor stored = DequantizeStored(*q);
  const at::Tensor original = Dequantize(*q);
  EXPECT_TRUE(at::equal(original.index_select(1, q->perm), stored));
  // At 8 bits Ŵ is close to W in the original order.
  const double rel = (original - w).norm().item<double>() / w.norm().item<double>();
  EXPECT_LT(rel, 0.02);
}

TEST(QuantizeRtnTest, GroupWiderThanTheRowDequantizesAsOneGroupWithoutBlowingUp) {
  // A 5-column matrix with group_size 128 (what the compressor writes for a
  // narrow band) or 2^40 (a crafted file): one group per row, same values,
  // and no [rows, group_size] intermediate.
  at::Generator gen = at::detail::createCPUGenerator(4);
  const at::Tensor w = at::randn({3, 5}, gen);
  auto q = QuantizeRtn(w, 4, 128);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->scales.size(1), 1);
  const at::Tensor want = DequantizeStored(*q);
  QuantizedMatrix huge = *q;
  huge.group_size = int64_t{1} << 40;
  EXPECT_EQ(huge.num_groups(), 1);
  EXPECT_TRUE(at::equal(DequantizeStored(huge), want));
  auto q5 = QuantizeRtn(w, 4, 5);
  ASSERT_TRUE(q5.ok());
  EXPECT_TRUE(at::equal(DequantizeStored(*q5), want));
}

TEST(QuantizeGptqTest, DeadColumnsAreZeroAndOthersStillGood) {
  at::Generator gen = at::detail::createCPUGenerator(9);
  const int64_t rows = 32, cols = 128;
  const at::Tensor w = at::randn({rows, cols}, gen);
  at::Tensor x = CorrelatedInputs(cols, 2000, gen);
  x.select(0, 3).zero_();
  x.select(0, 70).zero_();
  const at::Tensor h = HessianOf(x);
  for (bool act_order : {false, true}) {
    QuantizeOptions opts;
    opts.bits = 4;
    opts.group_size = 32;
    opts.act_order = act_order;
    auto q = QuantizeGptq(w, h, opts);
    ASSERT_TRUE(q.ok()) << q.status();
    const at::Tensor wq = Dequantize(*q);
    EXPECT_EQ(wq.select(1, 3).abs().max().item<float>(), 0.0f);
    EXPECT_EQ(wq.select(1, 70).abs().max().item<float>(), 0.0f);
    auto r = QuantizeRtn(w, 4, 32);
    ASSERT_TRUE(r.ok());
    EXPECT_LT(OutputError(w, wq, x), OutputError(w, Dequantize(*r), x));
  }
}

TEST(QuantizeGptqTest, IndefiniteHessianGetsMoreDampening) {
  // Blocks [[1, 2], [2, 1]]: eigenvalues 3 and -1. 1% dampening is not enough,
  // 10x retries reach a positive definite matrix.
  const int64_t cols = 8;
  at::Tensor h = at::eye(cols);
  for (int64_t i = 0; i < cols; i += 2) {
    h[i][i + 1] = 2.0;
    h[i + 1][i] = 2.0;
  }
  const at::Tensor w = at::randn({4, cols});
  QuantizeOptions opts;
  opts.group_size = 4;
  EXPECT_TRUE(QuantizeGptq(w, h, opts).ok());
  // Eigenvalue -1000 is beyond every retry.
  at::Tensor hard = at::eye(cols);
  for (int64_t i = 0; i < cols; i += 2) {
    hard[i][i + 1] = 1001.0;
    hard[i + 1][i] = 1001.0;
  }
  EXPECT_EQ(QuantizeGptq(w, hard, opts).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(QuantizeGptqTest, BadArguments) {
  const at::Tensor w = at::randn({4, 8});
  const at::Tensor h = at::eye(8);
  QuantizeOptions opts;
  EXPECT_TRUE(QuantizeGptq(w, h, opts).ok());  // group larger than cols is fine
  EXPECT_EQ(QuantizeGptq(w, at::eye(7), opts).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeGptq(w, at::zeros({8, 8}), opts).status().code(), absl::StatusCode::kInvalidArgument);
  at::Tensor bad = w.clone();
  bad[0][0] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(QuantizeGptq(bad, h, opts).status().code(), absl::StatusCode::kInvalidArgument);
  QuantizeOptions o = opts;
  o.bits = 6;
  EXPECT_EQ(QuantizeGptq(w, h, o).status().code(), absl::StatusCode::kInvalidArgument);
  o = opts;
  o.group_size = -1;
  EXPECT_EQ(QuantizeGptq(w, h, o).status().code(), absl::StatusCode::kInvalidArgument);
  o = opts;
  o.block_size = 0;
  EXPECT_EQ(QuantizeGptq(w, h, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(QuantizeGptqTest, LazyBlocksMatchColumnByColumn) {
  // Lazy batching is an exact reorganisation of the column-by-column update:
  // block sizes 1, 40 (groups straddle blocks) and 128 agree up to rounding.
  at::Generator gen = at::detail::createCPUGenerator(13);
  const at::Tensor w = at::randn({24, 160}, gen);
  const at::Tensor x = CorrelatedInputs(160, 1500, gen);
  const at::Tensor h = HessianOf(x);
  QuantizeOptions opts;
  opts.bits = 3;
  opts.group_size = 32;
  opts.block_size = 1;
  auto ref = QuantizeGptq(w, h, opts);
  ASSERT_TRUE(ref.ok()) << ref.status();
  for (int64_t bs : {40, 128}) {
    opts.block_size = bs;
    auto q = QuantizeGptq(w, h, opts);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_TRUE(at::equal(q->perm, ref->perm));
    const double mismatch = (q->codes != ref->codes).to(at::kDouble).mean().item<double>();
    EXPECT_LT(mismatch, 0.005) << "block_size=" << bs;
  }
}

TEST(QuantizeGptqTest, IdentityHessianMatchesRtn) {
  // With H = I (no dampening matters: it is uniform) there is no error to
  // feed back, so GPTQ without act order reduces to RTN.
  at::Generator gen = at::detail::createCPUGenerator(2);
  const at::Tensor w = at::randn({8, 96}, gen);
  QuantizeOptions opts;
  opts.bits = 3;
  opts.group_size = 32;
  opts.act_order = false;
  auto g = QuantizeGptq(w, at::eye(96), opts);
  auto r = QuantizeRtn(w, 3, 32);
  ASSERT_TRUE(g.ok() && r.ok());
  EXPECT_TRUE(at::equal(g->codes, r->codes));
  EXPECT_TRUE(at::equal(g->zeros, r->zeros));
  EXPECT_TRUE(at::allclose(g->scales, r->scales));
}

}  // namespace
}  // namespace skillpack
