#include "core/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace skillpack {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> RandomLogits(int n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

std::vector<double> Softmax(const std::vector<float>& logits, double t = 1.0) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp((logits[i] - m) / t);
    sum += p[i];
  }
  for (double& x : p) x /= sum;
  return p;
}

// Ids sorted by logit descending (ties: lower id first).
std::vector<int> RankedIds(const std::vector<float>& logits) {
  std::vector<int> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  return ids;
}

SamplingParams Seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

TEST(SamplerTest, GreedyIsArgmax) {
  SamplingParams p = Seeded(1);
  p.temperature = 0.0f;
  Sampler sampler(p);
  for (int trial = 0; trial < 200; ++trial) {
    const std::vector<float> logits = RandomLogits(1000, trial);
    const int expected = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(sampler.Sample(logits.data(), 1000, {}).token, expected);
  }
}

TEST(SamplerTest, GreedyTiesPickLowestId) {
  SamplingParams p = Seeded(1);
  p.temperature = 0.0f;
  Sampler sampler(p);
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 2.0f};
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(sampler.Sample(logits.data(), 5, {}).token, 1);
  }
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedsDiffer) {
  const std::vector<float> logits = RandomLogits(50, 7, 1.0f);
  auto draw = [&](uint64_t seed) {
    Sampler sampler(Seeded(seed));
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) {
      out.push_back(sampler.Sample(logits.data(), 50, out).token);
    }
    return out;
  };
  const std::vector<int32_t> a = draw(42);
  EXPECT_EQ(a, draw(42));
  EXPECT_NE(a, draw(43));
  EXPECT_GT(std::set<int32_t>(a.begin(), a.end()).size(), 5u);
}

TEST(SamplerTest, TopKNeverLeavesTheKLargest) {
  const int v = 1000;
  const std::vector<float> logits = RandomLogits(v, 3, 0.5f);
  const std::vector<int> ranked = RankedIds(logits);
  const std::set<int> allowed(ranked.begin(), ranked.begin() + 5);
  SamplingParams p = Seeded(5);
  p.top_k = 5;
  Sampler sampler(p);
  std::set<int> seen;
  for (int i = 0; i < 5000; ++i) {
    const int t = sampler.Sample(logits.data(), v, {}).token;
    ASSERT_TRUE(allowed.count(t)) << "token " << t;
    seen.insert(t);
  }
  EXPECT_EQ(seen, allowed);  // flat-ish logits: all five get drawn
}

TEST(SamplerTest, TopKTiesAtBoundaryKeepLowerIds) {
  const std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  SamplingParams p = Seeded(5);
  p.top_k = 2;
  Sampler sampler(p);
  for (int i = 0; i < 500; ++i) {
    EXPECT_LT(sampler.Sample(logits.data(), 4, {}).token, 2);
  }
}

TEST(SamplerTest, TopPNeverLeavesTheNucleus) {
  // Probabilities 0.05, 0.4, 0.1, 0.3, 0.15 (ids 0..4). Sorted: 0.4 (1),
  // 0.3 (3), 0.15 (4) reach 0.85 >= 0.8; so the nucleus is {1, 3, 4}.
  const std::vector<double> probs = {0.05, 0.4, 0.1, 0.3, 0.15};
  std::vector<float> logits;
  for (double q : probs) logits.push_back(static_cast<float>(std::log(q)));
  SamplingParams p = Seeded(9);
  p.top_p = 0.8f;
  Sampler sampler(p);
  std::vector<int> counts(5, 0);
  for (int i = 0; i < 5000; ++i) ++counts[sampler.Sample(logits.data(), 5, {}).token];
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[3], 0);
  EXPECT_GT(counts[4], 0);
  // Renormalised within the nucleus: 0.4 / 0.85 ~ 0.47.
  EXPECT_NEAR(counts[1] / 5000.0, 0.4 / 0.85, 0.03);
}

TEST(SamplerTest, TopPOnLargeVocabMatchesHandNucleus) {
  // V = 128k exercises the incremental partial sort.
  const int v = 128 * 1024;
  const std::vector<float> logits = RandomLogits(v, 11, 2.0f);
  const std::vector<double> probs = Softmax(logits);
  const std::vector<int> ranked = RankedIds(logits);
  std::set<int> nucleus;
  double cum = 0.0;
  for (int id : ranked) {
    nucleus.insert(id);
    cum += probs[id];
    if (cum >= 0.5) break;
  }
  ASSERT_GT(nucleus.size(), 64u);  // needs more than one partial-sort round
  SamplingParams p = Seeded(13);
  p.top_p = 0.5f;
  Sampler sampler(p);
  for (int i = 0; i < 500; ++i) {
    const int t = sampler.Sample(logits.data(), v, {}).token;
    ASSERT_TRUE(nucleus.count(t)) << "token " << t;
  }
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  // p_max = 0.4; min_p = 0.3 => threshold 0.12 keeps {0.4, 0.25, 0.15}.
  const std::vector<double> probs = {0.1, 0.4, 0.25, 0.05, 0.15, 0.05};
  std::vector<float> logits;
  for (double q : probs) logits.push_back(static_cast<float>(std::log(q)));
  SamplingParams p = Seeded(17);
  p.min_p = 0.3f;
  Sampler sampler(p);
  std::vector<int> counts(6, 0);
  for (int i = 0; i < 5000; ++i) ++counts[sampler.Sample(logits.data(), 6, {}).token];
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[3], 0);
  EXPECT_EQ(counts[5], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[2], 0);
  EXPECT_GT(counts[4], 0);
}

// Pearson chi-square of `n` draws against `probs`.
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  double chi2 = 0.0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double expected = n * probs[i];
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

TEST(SamplerTest, FrequenciesMatchSoftmax) {
  const std::vector<float> logits = {0.3f, -1.0f, 1.2f, 0.0f, 2.0f, -0.5f, 0.8f, -2.0f};
  for (float t : {1.0f, 0.7f, 2.0f}) {
    SamplingParams p = Seeded(23);
    p.temperature = t;
    Sampler sampler(p);
    const int n = 100000;
    std::vector<int> counts(8, 0);
    for (int i = 0; i < n; ++i) ++counts[sampler.Sample(logits.data(), 8, {}).token];
    // 7 degrees of freedom: P(chi2 > 24.3) = 0.001.
    EXPECT_LT(ChiSquare(counts, Softmax(logits, t), n), 24.3) << "T=" << t;
  }
}

TEST(SamplerTest, RepetitionPenaltyFlipsGreedyChoice) {
  SamplingParams p = Seeded(1);
  p.temperature = 0.0f;
  p.repetition_penalty = 1.2f;
  Sampler sampler(p);
  // Positive logit is divided: 2.0 / 1.2 = 1.67 < 1.9.
  const std::vector<float> pos = {2.0f, 1.9f, 0.0f};
  EXPECT_EQ(sampler.Sample(pos.data(), 3, {}).token, 0);
  EXPECT_EQ(sampler.Sample(pos.data(), 3, {0}).token, 1);
  // Negative logit is multiplied: -1.0 * 1.2 = -1.2 < -1.1.
  const std::vector<float> neg = {-1.0f, -1.1f, -5.0f};
  EXPECT_EQ(sampler.Sample(neg.data(), 3, {}).token, 0);
  EXPECT_EQ(sampler.Sample(neg.data(), 3, {0}).token, 1);
  // Applied once per distinct id: 2.0 / 1.2 = 1.67 > 1.5 however often 0
  // repeats (thrice would give 1.16). Out-of-range ids are ignored.
  const std::vector<float> once = {2.0f, 1.5f, 0.0f};
  EXPECT_EQ(sampler.Sample(once.data(), 3, {0, 0, 0, -4, 99}).token, 0);
}

TEST(SamplerTest, RepetitionPenaltyLowersSampledFrequency) {
  const std::vector<float> logits = {1.0f, 1.0f};
  SamplingParams p = Seeded(29);
  p.repetition_penalty = 2.0f;
  Sampler sampler(p);
  int zeros = 0;
  const int n = 5000;
  for (int i = 0; i < n; ++i) zeros += sampler.Sample(logits.data(), 2, {0}).token == 0;
  // Logits become {0.5, 1.0}: p(0) = 1 / (1 + e^0.5) = 0.378.
  EXPECT_NEAR(zeros / static_cast<double>(n), 1.0 / (1.0 + std::exp(0.5)), 0.02);
}

TEST(SamplerTest, LogprobIsLogSoftmaxOfRawLogits) {
  const int v = 300;
  const std::vector<float> logits = RandomLogits(v, 31);
  const std::vector<double> probs = Softmax(logits);
  SamplingParams p = Seeded(37);
  p.temperature = 0.5f;
  p.top_k = 20;
  p.top_p = 0.9f;
  p.repetition_penalty = 1.3f;
  Sampler sampler(p);
  std::vector<int32_t> history = {1, 2, 3};
  for (int i = 0; i < 100; ++i) {
    const SampleResult r = sampler.Sample(logits.data(), v, history);
    EXPECT_NEAR(r.logprob, std::log(probs[r.token]), 1e-4);
    history.push_back(r.token);
  }
  SamplingParams g = Seeded(1);
  g.temperature = 0.0f;
  Sampler greedy(g);
  const SampleResult r = greedy.Sample(logits.data(), v, {});
  EXPECT_NEAR(r.logprob, std::log(probs[r.token]), 1e-4);
}

TEST(SamplerTest, NanAndInfLogits) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Sampler sampler(Seeded(41));
  const std::vector<float> some_nan = {nan, 0.0f, nan, 0.5f};
  for (int i = 0; i < 500; ++i) {
    const SampleResult r = sampler.Sample(some_nan.data(), 4, {});
    EXPECT_TRUE(r.token == 1 || r.token == 3) << r.token;
    EXPECT_TRUE(std::isfinite(r.logprob));
  }
  const std::vector<float> all_bad = {nan, -kInf, nan};
  SampleResult r = sampler.Sample(all_bad.data(), 3, {});
  EXPECT_EQ(r.token, 0);
  EXPECT_EQ(r.logprob, -kInf);
  const std::vector<float> pos_inf = {0.0f, kInf, 3.0f};
  r = sampler.Sample(pos_inf.data(), 3, {});
  EXPECT_EQ(r.token, 1);
  EXPECT_NEAR(r.logprob, 0.0f, 1e-6);

  SamplingParams g = Seeded(1);
  g.temperature = 0.0f;
  Sampler greedy(g);
  EXPECT_EQ(greedy.Sample(some_nan.data(), 4, {}).token, 3);
  EXPECT_EQ(greedy.Sample(all_bad.data(), 3, {}).token, 0);
}

TEST(SamplerTest, ExtremeTemperatureStaysFinite) {
  const std::vector<float> logits = {3.0e38f, -3.0e38f, 1.0f};
  SamplingParams p = Seeded(43);
  p.temperature = 0.01f;
  Sampler sampler(p);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(sampler.Sample(logits.data(), 3, {}).token, 0);
  }
}

TEST(ValidateSamplingParamsTest, AcceptsDefaults) { EXPECT_TRUE(ValidateSamplingParams(SamplingParams(), 32000).ok()); }

TEST(ValidateSamplingParamsTest, ErrorsNameTheField) {
  struct Case {
    std::string field;
    void (*mutate)(SamplingParams&);
  };
  const std::vector<Case> cases = {
      {"max_new_tokens", [](SamplingParams& p) { p.max_new_tokens = 0; }},
      {"max_new_tokens", [](SamplingParams& p) { p.max_new_tokens = kMaxNewTokensLimit + 1; }},
      {"temperature", [](SamplingParams& p) { p.temperature = -1.0f; }},
      {"temperature", [](SamplingParams& p) { p.temperature = 101.0f; }},
      {"temperature", [](SamplingParams& p) { p.temperature = std::numeric_limits<float>::quiet_NaN(); }},
      {"top_k", [](SamplingParams& p) { p.top_k = -1; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 1.5f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = -0.1f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.1f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 200.0f; }},
      {"stop[1]",
       [](SamplingParams& p) {
         p.stop = {"a", ""};
       }},
      {"stop[0]", [](SamplingParams& p) { p.stop = {std::string(257, 'x')}; }},
      {"stop must hold", [](SamplingParams& p) { p.stop.assign(17, "x"); }},
      {"stop_token_ids[0]", [](SamplingParams& p) { p.stop_token_ids = {-1}; }},
      {"stop_token_ids[1]",
       [](SamplingParams& p) {
         p.stop_token_ids = {5, 100};
       }},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    c.mutate(p);
    const Status s = ValidateSamplingParams(p, 100);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(std::string(s.message()).find(c.field), std::string::npos) << c.field << " not in: " << s.message();
  }
  SamplingParams p;
  p.temperature = -1.0f;
  EXPECT_EQ(ValidateSamplingParams(p, 100).message(), "temperature must be in [0, 100], got -1");
  EXPECT_EQ(ValidateSamplingParams(SamplingParams(), 0).code(), absl::StatusCode::kInvalidArgument);
  // Boundaries that are allowed.
  SamplingParams ok;
  ok.temperature = 0.0f;
  ok.top_p = 1.0f;
  ok.min_p = 1.0f;
  ok.max_new_tokens = kMaxNewTokensLimit;
  ok.stop.assign(16, std::string(256, 'x'));
  ok.stop_token_ids = {0, 99};
  EXPECT_TRUE(ValidateSamplingParams(ok, 100).ok());
}

}  // namespace
}  // namespace skillpack
