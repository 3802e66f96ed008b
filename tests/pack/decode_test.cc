// Decode tests: every op against a reference written independently here from
// the format's definitions (w = (q - z) * s per group, act-order columns put
// back, σ between the factors, sparse scatter), factored and dense decoded
// forms agreeing bit for bit, and decode(read(write(p))) == decode(p).
#include "pack/decode.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "pack/format.h"
#include "tests/pack/pack_test_util.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;

// Ŵ in original column order, element by element.
at::Tensor ReferenceDequant(const QuantizedMatrix& q) {
  at::Tensor out = at::zeros({q.rows, q.cols}, at::kDouble);
  auto codes = q.codes.accessor<uint8_t, 2>();
  auto zeros = q.zeros.accessor<uint8_t, 2>();
  auto scales = q.scales.accessor<float, 2>();
  auto o = out.accessor<double, 2>();
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t j = 0; j < q.cols; ++j) {
      const int64_t g = j / q.group_size;
      const int64_t col = q.perm.defined() ? q.perm[j].item<int64_t>() : j;
      o[r][col] = (static_cast<double>(codes[r][j]) - zeros[r][g]) * static_cast<double>(scales[r][g]);
    }
  }
  return out;
}

at::Tensor ReferenceDelta(const ModuleDelta& m) {
  switch (m.op) {
    case ModuleOp::kLowRank: {
      at::Tensor d = at::zeros(m.shape, at::kDouble);
      for (const LowRankBand& b : m.bands) {
        const at::Tensor sigma = m.sigma.slice(0, b.rank_begin, b.rank_end).to(at::kDouble);
        d += ReferenceDequant(b.u).matmul(at::diag(sigma)).matmul(ReferenceDequant(b.vt));
      }
      return d;
    }
    case ModuleOp::kSparse: {
      at::Tensor d = at::zeros(m.shape, at::kDouble);
      at::Tensor flat = d.view({-1});
      for (int64_t i = 0; i < m.indices.numel(); ++i) {
        flat[m.indices[i].item<int64_t>()] = m.values[i].item<double>();
      }
      return d;
    }
    case ModuleOp::kDenseQuant:
      return ReferenceDequant(m.dense);
    case ModuleOp::kDense:
      return m.full.to(at::kDouble);
  }
  return at::Tensor();
}

TEST(PackDecodeTest, EveryOpMatchesReference) {
  const SkillPack p = testutil::EveryOpPack(11);
  for (const ModuleDelta& m : p.modules) {
    SCOPED_TRACE(m.name);
    auto d = DecodeModuleDelta(m);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->scalar_type(), at::kFloat);
    EXPECT_EQ(d->sizes().vec(), m.shape);
    const at::Tensor ref = ReferenceDelta(m);
    const double scale = ref.abs().max().item<double>();
    ASSERT_GT(scale, 0);
    EXPECT_LE((d->to(at::kDouble) - ref).abs().max().item<double>(), 1e-6 * scale);
    if (m.op == ModuleOp::kSparse || m.op == ModuleOp::kDense) {
      EXPECT_TRUE(at::equal(d->to(at::kDouble), ref));  // exact: no arithmetic
    }
    if (m.op == ModuleOp::kDense) {
      EXPECT_NE(d->data_ptr(), m.full.data_ptr());  // a copy
    }
  }
}

TEST(PackDecodeTest, ActOrderPermutationIsUndone) {
  // A 1 x 4 matrix whose stored columns hold original columns perm = {2, 0, 3, 1}.
  QuantizedMatrix q;
  q.bits = 4;
  q.rows = 1;
  q.cols = 4;
  q.group_size = 4;
  q.codes = at::tensor({1, 2, 3, 4}, at::kByte).view({1, 4});
  q.zeros = at::tensor({1}, at::kByte).view({1, 1});
  q.scales = at::tensor({0.5f}).view({1, 1});
  q.perm = at::tensor({2, 0, 3, 1}, at::kLong);
  ModuleDelta m;
  m.name = "x";
  m.op = ModuleOp::kDenseQuant;
  m.shape = {1, 4};
  m.dense = q;
  auto d = DecodeModuleDelta(m);
  ASSERT_TRUE(d.ok()) << d.status();
  // stored values (q - 1) * 0.5 = {0, 0.5, 1, 1.5} go to columns {2, 0, 3, 1}.
  EXPECT_TRUE(at::equal(*d, at::tensor({0.5f, 1.5f, 0.0f, 1.0f}).view({1, 4})));
}

TEST(PackDecodeTest, FactorsMultiplyToTheDeltaExactly) {
  const SkillPack p = testutil::EveryOpPack(12);
  const ModuleDelta& m = p.modules[2];  // down_proj, 4 bands
  ASSERT_EQ(m.op, ModuleOp::kLowRank);
  auto f = DecodeLowRankFactors(m);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->us.sizes().vec(), (std::vector<int64_t>{32, 7}));
  EXPECT_EQ(f->vt.sizes().vec(), (std::vector<int64_t>{7, 48}));
  EXPECT_TRUE(at::equal(f->us.matmul(f->vt), *DecodeModuleDelta(m)));
  EXPECT_FALSE(DecodeLowRankFactors(p.modules[0]).ok());  // sparse
}

TEST(PackDecodeTest, DecodedPackBothFormsAndRoundTrip) {
  const SkillPack p = testutil::EveryOpPack(13);
  auto dense = DecodePack(p, /*keep_factors=*/false);
  auto factored = DecodePack(p, /*keep_factors=*/true);
  ASSERT_TRUE(dense.ok()) << dense.status();
  ASSERT_TRUE(factored.ok()) << factored.status();
  EXPECT_EQ(dense->name, p.manifest.name);
  EXPECT_EQ(factored->base_fingerprint, p.manifest.base_fingerprint);
  auto reread = ParseSkillPack(*SerializeSkillPack(p), "rt");
  ASSERT_TRUE(reread.ok()) << reread.status();
  auto after = DecodePack(*reread, true);
  ASSERT_TRUE(after.ok());
  int64_t dense_bytes = 0;
  for (const ModuleDelta& m : p.modules) {
    SCOPED_TRACE(m.name);
    const DecodedModule& d = dense->modules.at(m.name);
    const DecodedModule& f = factored->modules.at(m.name);
    EXPECT_FALSE(d.factored());
    EXPECT_FALSE(d.is_sparse());
    EXPECT_EQ(f.factored(), m.op == ModuleOp::kLowRank);
    // The host tier's form of a pruned module: its entries as sparse rows,
    // 4 bytes an entry and 8 a row, not the dense matrix.
    EXPECT_EQ(f.is_sparse(), m.op == ModuleOp::kSparse);
    if (f.is_sparse()) {
      EXPECT_EQ(f.bytes(), 4 * m.indices.numel() + 8 * (m.shape[0] + 1));
    }
    // A dense_quant module's: its codes, 1 byte an entry (the last group
    // padded to the group size; one group is kept at the columns' width), a
    // scale and a shift per row and group, and the permutation if any.
    EXPECT_EQ(f.is_quant(), m.op == ModuleOp::kDenseQuant);
    if (f.is_quant()) {
      const QuantizedMatrix& q = m.dense;
      const int64_t gs = q.num_groups() == 1 ? q.cols : q.group_size;
      EXPECT_EQ(f.bytes(), q.rows * q.num_groups() * (gs + 8) + (q.perm.defined() ? 8 * q.cols : 0));
    }
    const at::Tensor want = *DecodeModuleDelta(m);
    EXPECT_TRUE(at::equal(d.DenseDelta(), want));
    EXPECT_TRUE(at::equal(f.DenseDelta(), want));
    EXPECT_TRUE(at::equal(after->modules.at(m.name).DenseDelta(), want));  // decode(read(write(p)))
    dense_bytes += want.numel() * 4;
  }
  EXPECT_EQ(dense->bytes(), dense_bytes);
  // Factors of [32, 48] rank 7 and [48, 32] rank 4 are smaller than the deltas.
  EXPECT_LT(factored->bytes(), dense->bytes());
}

// The host tier's form of a dense_quant module keeps the pack's values
// exactly, whatever the code width, group size (wider than the matrix, equal,
// or leaving a shorter last group) and column order.
TEST(PackDecodeTest, DenseQuantCodesAreKeptExactly) {
  at::Generator gen = at::detail::createCPUGenerator(17);
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t group : {7, 20, 128}) {
      for (bool act_order : {false, true}) {
        SCOPED_TRACE(absl::StrCat(bits, " bits, groups of ", group, act_order ? ", act order" : ""));
        const ModuleDelta m = testutil::DenseQuantModule("w", 6, 20, bits, group, act_order, gen);
        const QuantRows q = QuantRowsOf(m.dense);
        ASSERT_TRUE(CheckQuantRows(q, 6, 20).ok()) << CheckQuantRows(q, 6, 20);
        EXPECT_EQ(q.group_size(), std::min<int64_t>(group, 20));
        EXPECT_EQ(q.num_groups(), (20 + group - 1) / group);
        EXPECT_TRUE(at::equal(q.Dense(), Dequantize(m.dense)));
        EXPECT_TRUE(at::equal(q.GatherRows(at::tensor({4, 0, 4}, at::kLong)),
                              Dequantize(m.dense).index_select(0, at::tensor({4, 0, 4}, at::kLong))));
        EXPECT_LE(q.codes.to(at::kShort).abs().max().item<int>(), 1 << (bits - 1));
      }
    }
  }
}

TEST(PackDecodeTest, InvalidModulesAreRefusedNotCrashed) {
  SkillPack p = testutil::EveryOpPack(14);
  ModuleDelta bad = p.modules[2];
  bad.bands[1].u.codes = at::Tensor();
  auto d = DecodeModuleDelta(bad);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("band 1 u: codes is missing"));

  ModuleDelta sparse = p.modules[0];
  sparse.indices = sparse.indices.clone();
  sparse.indices[0] = 1 << 20;
  EXPECT_FALSE(DecodeModuleDelta(sparse).ok());

  ModuleDelta dense = p.modules[1];
  dense.full = at::Tensor();
  EXPECT_FALSE(DecodeModuleDelta(dense).ok());

  p.modules[2] = bad;
  auto pack = DecodePack(p, true);
  ASSERT_FALSE(pack.ok());
  EXPECT_THAT(std::string(pack.status().message()), HasSubstr("model.layers.0.mlp.down_proj.weight"));
}

}  // namespace
}  // namespace skillpack
