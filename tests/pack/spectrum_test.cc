// Delta spectra on hand-built matrices with known singular values, and the
// per-module report on a tiny model with a planted low-rank delta.
#include "pack/spectrum.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/model.h"
#include "core/tiny_model.h"

namespace skillpack {
namespace {

// Q1 · diag(s) · Q2ᵀ with seeded random orthogonal Q1 [rows, k], Q2 [cols, k].
at::Tensor WithSingularValues(const std::vector<double>& s, int64_t rows, int64_t cols, uint64_t seed) {
  at::manual_seed(seed);
  const int64_t k = static_cast<int64_t>(s.size());
  at::Tensor q1 = std::get<0>(at::linalg_qr(at::randn({rows, k}, at::kDouble)));
  at::Tensor q2 = std::get<0>(at::linalg_qr(at::randn({cols, k}, at::kDouble)));
  at::Tensor d = at::tensor(s, at::kDouble);
  return (q1 * d).matmul(q2.t()).to(at::kFloat);
}

TEST(SpectrumTest, DiagonalMatrixEnergyAndRanks) {
  SpectrumOptions o;
  o.ranks = {1, 2, 3, 8};
  o.energies = {0.9, 0.95, 0.99, 1.0};
  at::Tensor m = at::zeros({4, 5});
  m[0][0] = 3, m[1][1] = -2, m[2][2] = 1;  // σ = 3, 2, 1, 0; Σσ² = 14
  auto s = ComputeSpectrum(m, o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->rows, 4);
  EXPECT_EQ(s->cols, 5);
  ASSERT_EQ(s->singular_values.size(), 4u);
  EXPECT_NEAR(s->singular_values[0], 3, 1e-9);
  EXPECT_NEAR(s->singular_values[1], 2, 1e-9);
  EXPECT_NEAR(s->singular_values[3], 0, 1e-9);
  EXPECT_NEAR(s->energy, 14, 1e-9);
  ASSERT_EQ(s->energy_at_rank.size(), 4u);
  EXPECT_NEAR(s->energy_at_rank[0], 9.0 / 14, 1e-9);
  EXPECT_NEAR(s->energy_at_rank[1], 13.0 / 14, 1e-9);
  EXPECT_NEAR(s->energy_at_rank[2], 1.0, 1e-9);
  EXPECT_NEAR(s->energy_at_rank[3], 1.0, 1e-9);  // rank above min(m, n)
  // 13/14 = 0.929: rank 2 reaches 90%, rank 3 the rest.
  EXPECT_EQ(s->rank_for_energy, (std::vector<int64_t>{2, 3, 3, 3}));
}

TEST(SpectrumTest, RotatedMatrixKeepsItsSpectrum) {
  SpectrumOptions o;
  o.ranks = {1, 2, 4, 16};
  o.energies = {0.5, 0.9, 0.99};
  // σ² = 16, 4, 1, 0.25, 0.0625: Σ = 21.3125.
  auto s = ComputeSpectrum(WithSingularValues({4, 2, 1, 0.5, 0.25}, 12, 9, 3), o);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->singular_values.size(), 9u);
  const double want[] = {4, 2, 1, 0.5, 0.25, 0, 0, 0, 0};
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(s->singular_values[i], want[i], 1e-5) << i;
  EXPECT_NEAR(s->energy_at_rank[0], 16 / 21.3125, 1e-5);
  EXPECT_NEAR(s->energy_at_rank[1], 20 / 21.3125, 1e-5);
  EXPECT_NEAR(s->energy_at_rank[2], 21.25 / 21.3125, 1e-5);
  EXPECT_NEAR(s->energy_at_rank[3], 1, 1e-9);
  // Cumulative σ²: 16, 20, 21, 21.25 of 21.3125, i.e. 0.751, 0.938, 0.985, 0.997:
  // 0.5 -> 1; 0.9 -> 2; 0.99 -> 4.
  EXPECT_EQ(s->rank_for_energy, (std::vector<int64_t>{1, 2, 4}));
}

TEST(SpectrumTest, ZeroMatrixAndBadInput) {
  SpectrumOptions o;
  auto z = ComputeSpectrum(at::zeros({3, 3}), o);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->energy, 0);
  for (double e : z->energy_at_rank) EXPECT_EQ(e, 1.0);
  for (int64_t r : z->rank_for_energy) EXPECT_EQ(r, 0);

  EXPECT_EQ(ComputeSpectrum(at::zeros({3}), o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputeSpectrum(at::zeros({0, 3}), o).status().code(), absl::StatusCode::kInvalidArgument);
  at::Tensor nan = at::zeros({2, 2});
  nan[0][1] = std::nan("");
  Status s = ComputeSpectrum(nan, o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("non-finite"), std::string::npos) << s;
  o.ranks = {1, 0};
  s = ValidateSpectrumOptions(o);
  EXPECT_NE(s.message().find("ranks[1]"), std::string::npos) << s;
  o = {};
  o.energies = {0.9, 1.5};
  s = ValidateSpectrumOptions(o);
  EXPECT_NE(s.message().find("energies[1]"), std::string::npos) << s;
}

TEST(SpectrumTest, ReportFindsAPlantedRankTwoDelta) {
  at::set_num_threads(1);
  const std::string dir = ::testing::TempDir() + "/spectrum_test_tiny";
  TinyModelOptions t;
  t.layers = 2, t.hidden = 32, t.heads = 2, t.kv_heads = 1, t.seed = 4;
  ASSERT_TRUE(InitTinyModel(t, dir).ok());
  auto base = *LoadModel(dir, at::kFloat);
  const std::string q0 = "model.layers.0.self_attn.q_proj.weight";
  const at::Tensor& w = *base->weights->Find(q0);
  auto tuned = base->weights->WithReplaced({{q0, w + WithSingularValues({0.3, 0.1}, w.size(0), w.size(1), 9)}});
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  SpectrumOptions o;
  o.ranks = {1, 2, 4};
  o.energies = {0.8, 0.99};
  auto r = DeltaSpectrumReport(*base->weights, **tuned, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ((*r)["modules"].size(), 14u);  // 7 projections x 2 layers
  bool found = false;
  for (const Json& m : (*r)["modules"]) {
    if (m["name"] == q0) {
      found = true;
      EXPECT_EQ(m["type"], "q_proj");
      EXPECT_NEAR(m["energy_at_rank"][0].get<double>(), 0.09 / 0.1, 1e-4);
      EXPECT_NEAR(m["energy_at_rank"][1].get<double>(), 1.0, 1e-4);
      EXPECT_EQ(m["rank_for_energy"][0], 1);
      EXPECT_EQ(m["rank_for_energy"][1], 2);
      EXPECT_NEAR(m["delta_fro_norm"].get<double>(), std::sqrt(0.1), 1e-4);
    } else {
      EXPECT_EQ(m["delta_fro_norm"].get<double>(), 0.0) << m["name"];
    }
  }
  EXPECT_TRUE(found);
  const Json& q = (*r)["by_type"]["q_proj"];
  EXPECT_EQ(q["modules"], 2);
  EXPECT_EQ(q["full_rank"], 32);
  // Layer 0: 0.9 at rank 1; layer 1 (no delta): 1.
  EXPECT_NEAR(q["mean_energy_at_rank"][0].get<double>(), (0.9 + 1.0) / 2, 1e-4);

  // A tuned model of another shape is refused, naming the tensor.
  TinyModelOptions t2 = t;
  t2.hidden = 64;
  ASSERT_TRUE(InitTinyModel(t2, dir + "2").ok());
  auto other = *LoadModel(dir + "2", at::kFloat);
  Status s = DeltaSpectrumReport(*base->weights, *other->weights, o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layers.0"), std::string::npos) << s;
}

}  // namespace
}  // namespace skillpack
