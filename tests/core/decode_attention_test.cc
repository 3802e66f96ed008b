// DecodeAttention against a double-precision reference written from the
// definition (softmax of scaled dot products over the visible keys, then the
// weighted sum of the values), on cache layouts the model uses: multi-head,
// grouped and multi-query heads, head sizes on and off the 16-float vector
// width (and each size the builds have a fixed-size path for: 32, 64, 80,
// 96, 128), non-consecutive slots, sliding windows, one visible key, more
// keys than a value block, and work split into unit ranges as threads would
// split it; in every build this CPU runs.
#include "core/decode_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"

namespace skillpack {
namespace {

struct Case {
  int64_t heads, kv_heads, head_dim, max_len;
  std::vector<DecodeAttentionSeq> seqs;
  float q_range = 8;  // queries uniform in [-q_range, q_range]
};

std::vector<double> Reference(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v) {
  const int64_t B = static_cast<int64_t>(c.seqs.size()), G = c.heads / c.kv_heads, hd = c.head_dim;
  std::vector<double> out(B * c.heads * hd, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const DecodeAttentionSeq& s = c.seqs[b];
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t base = (s.slot * c.kv_heads + h / G) * c.max_len * hd;
      std::vector<double> p;
      double mx = -1e300;
      for (int64_t j = s.key_begin; j < s.key_end; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) dot += double{q[(b * c.heads + h) * hd + d]} * k[base + j * hd + d];
        p.push_back(dot / std::sqrt(static_cast<double>(hd)));
        mx = std::max(mx, p.back());
      }
      double sum = 0;
      for (double& x : p) sum += (x = std::exp(x - mx));
      for (int64_t j = s.key_begin; j < s.key_end; ++j) {
        for (int64_t d = 0; d < hd; ++d) {
          out[(b * c.heads + h) * hd + d] += p[j - s.key_begin] / sum * v[base + j * hd + d];
        }
      }
    }
  }
  return out;
}

// Every build this CPU runs (AVX-512, AVX2, plain); the best one is restored.
class DecodeAttentionTest : public ::testing::Test {
 protected:
  void TearDown() override { SetDecodeAttentionIsa(DecodeAttentionBestIsa()); }
};

TEST_F(DecodeAttentionTest, MatchesTheDefinitionInEveryBuild) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const Case cases[] = {
      // grouped-query (G = 4), TinyLlama's head size, slots out of order, different lengths
      {8, 2, 64, 40, {{3, 0, 17}, {0, 0, 1}, {5, 0, 40}, {1, 0, 33}}},
      // multi-head, a head size that is not a multiple of 16, sliding windows
      {4, 4, 20, 24, {{1, 10, 24}, {0, 3, 7}, {2, 0, 5}}},
      // multi-query, a wide head, one sequence
      {6, 1, 128, 64, {{0, 0, 64}}},
      // a 7-float head: scalar code only
      {2, 1, 7, 9, {{1, 4, 9}, {0, 8, 9}}},
      // head sizes 96 and 80, more keys than one block of the value pass (64)
      {4, 2, 96, 150, {{0, 0, 150}, {1, 20, 97}}},
      {2, 2, 80, 70, {{0, 5, 70}}},
      // scores hundreds apart: most probabilities underflow to 0, none is NaN
      {4, 2, 32, 30, {{0, 0, 30}, {1, 2, 19}}, 400},
  };
  int builds = 0;
  for (DecodeAttentionIsa isa : {DecodeAttentionIsa::kPlain, DecodeAttentionIsa::kAvx2, DecodeAttentionIsa::kAvx512}) {
    if (!SetDecodeAttentionIsa(isa)) continue;
    ++builds;
    for (const Case& c : cases) {
      SCOPED_TRACE(
          absl::StrCat("H=", c.heads, " KV=", c.kv_heads, " hd=", c.head_dim, " isa=", DecodeAttentionIsaName(isa)));
      int64_t slots = 0;
      for (const auto& s : c.seqs) slots = std::max(slots, s.slot + 1);
      const int64_t B = static_cast<int64_t>(c.seqs.size());
      std::vector<float> q(B * c.heads * c.head_dim), k(slots * c.kv_heads * c.max_len * c.head_dim), v(k.size());
      std::uniform_real_distribution<float> wide(-c.q_range, c.q_range);
      for (float& x : q) x = wide(rng);  // large scores: the softmax must subtract its maximum
      for (float& x : k) x = normal(rng);
      for (float& x : v) x = normal(rng);
      const std::vector<double> want = Reference(c, q, k, v);
      const DecodeAttentionShape shape{c.heads, c.kv_heads, c.head_dim, c.max_len};
      const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
      const int64_t units = B * c.kv_heads;
      // All units in one call, and in two ranges split at every point.
      for (int64_t split = 0; split <= units; ++split) {
        std::vector<float> got(want.size(), 12345.0f);
        DecodeAttention(shape, c.seqs.data(), q.data(), k.data(), v.data(), scale, 0, split, got.data());
        DecodeAttention(shape, c.seqs.data(), q.data(), k.data(), v.data(), scale, split, units, got.data());
        double worst = 0;
        for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
        EXPECT_LT(worst, 1e-4) << "split at unit " << split;
      }
    }
  }
  EXPECT_EQ(builds, 1 + static_cast<int>(DecodeAttentionBestIsa()));  // plain runs everywhere
}

// A NaN in the cache (a broken model's activations) makes the outputs of the
// heads that read it NaN, as ATen's softmax would, and leaves the other KV
// head's outputs alone; the exp never converts NaN to an integer (undefined
// behaviour, which CI's UBSan build would stop on).
TEST_F(DecodeAttentionTest, ANaNKeyGivesNaNOnlyInTheHeadsThatReadIt) {
  const int64_t H = 4, KV = 2, hd = 16, max_len = 6;
  std::vector<float> q(H * hd, 0.5f), k(KV * max_len * hd, 0.25f), v(k.size(), 1.0f), out(H * hd);
  k[(0 * max_len + 3) * hd + 5] = std::nanf("");  // KV head 0, position 3
  const DecodeAttentionSeq seq{0, 0, 5};
  for (DecodeAttentionIsa isa : {DecodeAttentionIsa::kPlain, DecodeAttentionIsa::kAvx2, DecodeAttentionIsa::kAvx512}) {
    if (!SetDecodeAttentionIsa(isa)) continue;
    SCOPED_TRACE(DecodeAttentionIsaName(isa));
    DecodeAttention({H, KV, hd, max_len}, &seq, q.data(), k.data(), v.data(), 0.25f, 0, KV, out.data());
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t d = 0; d < hd; ++d) {
        if (h < 2) {
          EXPECT_TRUE(std::isnan(out[h * hd + d])) << "head " << h;
        } else {
          EXPECT_FLOAT_EQ(out[h * hd + d], 1.0f) << "head " << h;  // equal scores over values of 1
        }
      }
    }
  }
}

}  // namespace
}  // namespace skillpack
