// Model tests: the KV-cache path against the full forward, batching against
// one-at-a-time, and the forward against a naive per-head reference written
// independently here (explicit RoPE angles, explicit repeat of KV heads).
#include "core/model.h"

#include <cmath>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/decode_attention.h"
#include "core/file_util.h"
#include "core/tiny_model.h"
#include "tests/core/test_models.h"

namespace skillpack {
namespace {

ModelConfig SmallConfig(absl::string_view model_type = "llama") {
  return testutil::TestConfig({{"model_type", std::string(model_type)}, {"max_position_embeddings", 128}});
}

std::shared_ptr<const ModelWeights> RandomWeights(const ModelConfig& c, uint64_t seed) {
  return testutil::RandomTestWeights(c, seed);
}

// ---- a naive reference, sharing no code with core/model.cc ----
at::Tensor RefRms(const at::Tensor& x, const at::Tensor& w, double eps) {
  return w * x / at::sqrt(x.pow(2).mean(-1, true) + eps);
}

double RefInvFreq(const ModelConfig& c, int64_t i) {
  double f = std::pow(c.rope_theta, -2.0 * i / c.head_dim);
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == RopeScalingType::kLinear) return f / rs.factor;
  if (rs.type == RopeScalingType::kLlama3) {
    double wavelen = 2 * M_PI / f;
    double lo = rs.original_max_position_embeddings / rs.low_freq_factor;
    double hi = rs.original_max_position_embeddings / rs.high_freq_factor;
    if (wavelen < hi) return f;
    if (wavelen > lo) return f / rs.factor;
    double s = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) /
               (rs.high_freq_factor - rs.low_freq_factor);
    return (1 - s) * f / rs.factor + s * f;
  }
  return f;
}

// x [T, hd] of one head: pairs (i, i + hd/2) rotated by angle pos * inv_freq_i.
at::Tensor RefRope(const ModelConfig& c, const at::Tensor& x) {
  at::Tensor y = x.clone();
  int64_t half = c.head_dim / 2;
  for (int64_t t = 0; t < x.size(0); ++t) {
    for (int64_t i = 0; i < half; ++i) {
      double a = t * RefInvFreq(c, i);
      double x1 = x[t][i].item<double>(), x2 = x[t][i + half].item<double>();
      y[t][i] = x1 * std::cos(a) - x2 * std::sin(a);
      y[t][i + half] = x2 * std::cos(a) + x1 * std::sin(a);
    }
  }
  return y;
}

at::Tensor MaybeBias(const at::Tensor& y, const at::Tensor& b) { return b.defined() ? y + b : y; }

// One sequence, tokens [T] -> logits [T, V].
at::Tensor RefForward(const ModelConfig& c, const ModelWeights& w, const std::vector<int64_t>& toks) {
  const int64_t T = static_cast<int64_t>(toks.size()), hd = c.head_dim;
  at::Tensor x = w.embed_tokens().index_select(0, at::tensor(toks));
  for (const LayerWeights& l : w.layers()) {
    at::Tensor h = RefRms(x, l.input_norm, c.rms_norm_eps);
    at::Tensor q = MaybeBias(h.matmul(l.q.t()), l.q_bias);
    at::Tensor k = MaybeBias(h.matmul(l.k.t()), l.k_bias);
    at::Tensor v = MaybeBias(h.matmul(l.v.t()), l.v_bias);
    std::vector<at::Tensor> heads;
    for (int64_t head = 0; head < c.num_attention_heads; ++head) {
      int64_t kvh = head / c.num_kv_groups();
      at::Tensor qh = RefRope(c, q.narrow(1, head * hd, hd));
      at::Tensor kh = RefRope(c, k.narrow(1, kvh * hd, hd));
      at::Tensor vh = v.narrow(1, kvh * hd, hd);
      at::Tensor s = qh.matmul(kh.t()) / std::sqrt(static_cast<double>(hd));
      for (int64_t i = 0; i < T; ++i) {
        for (int64_t j = 0; j < T; ++j) {
          bool visible = j <= i && (c.sliding_window == 0 || i - j < c.sliding_window);
          if (!visible) s[i][j] = -INFINITY;
        }
      }
      heads.push_back(at::softmax(s, -1).matmul(vh));
    }
    x = x + MaybeBias(at::cat(heads, 1).matmul(l.o.t()), l.o_bias);
    h = RefRms(x, l.post_attention_norm, c.rms_norm_eps);
    at::Tensor g = h.matmul(l.gate.t()), u = h.matmul(l.up.t());
    x = x + (g * at::sigmoid(g) * u).matmul(l.down.t());
  }
  return RefRms(x, w.final_norm(), c.rms_norm_eps).matmul(w.lm_head().t());
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> v;
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v.push_back(static_cast<int32_t>((s >> 33) % vocab));
  }
  return v;
}

at::Tensor Row(const std::vector<int32_t>& v) {
  std::vector<int64_t> w(v.begin(), v.end());
  return at::tensor(w).unsqueeze(0);
}

void ExpectNear(const at::Tensor& a, const at::Tensor& b, double tol) {
  ASSERT_EQ(a.sizes(), b.sizes());
  double diff = (a - b).abs().max().item<double>();
  EXPECT_LT(diff, tol) << "max abs difference " << diff;
}

struct Variant {
  const char* name;
  std::function<void(ModelConfig&)> edit;
};

class ModelVariantTest : public ::testing::TestWithParam<Variant> {};

TEST_P(ModelVariantTest, ForwardMatchesNaiveReference) {
  ModelConfig c = SmallConfig();
  GetParam().edit(c);
  auto w = RandomWeights(c, 1);
  Transformer m(c);
  std::vector<int32_t> toks = RandomTokens(11, c.vocab_size, 3);
  at::Tensor got = m.Forward(*w, Row(toks), at::ones({1, 11}, at::kLong))[0];
  ExpectNear(got, RefForward(c, *w, std::vector<int64_t>(toks.begin(), toks.end())), 1e-4);
}

TEST_P(ModelVariantTest, KvCacheDecodeMatchesFullForward) {
  ModelConfig c = SmallConfig();
  GetParam().edit(c);
  auto w = RandomWeights(c, 2);
  Transformer m(c);
  std::vector<int32_t> toks = RandomTokens(20, c.vocab_size, 5);
  at::Tensor full = m.Forward(*w, Row(toks), at::ones({1, 20}, at::kLong))[0];
  auto cache = *KvCache::Create(c, 2, 32, at::kFloat);
  int32_t slot = *cache->Acquire();
  // Prefill 7 tokens, then decode the rest one at a time.
  auto pre = m.Step(*w, *cache, {{slot, std::vector<int32_t>(toks.begin(), toks.begin() + 7)}}, true);
  ASSERT_TRUE(pre.ok()) << pre.status();
  ExpectNear((*pre)[0], full.narrow(0, 0, 7), 1e-4);
  for (size_t i = 7; i < toks.size(); ++i) {
    auto logits = m.Step(*w, *cache, {{slot, {toks[i]}}});
    ASSERT_TRUE(logits.ok()) << logits.status();
    ExpectNear((*logits)[0], full[i], 1e-4);
  }
  EXPECT_EQ(cache->length(slot), 20);
}

const Variant kVariants[] = {
    {"llama_gqa", [](ModelConfig&) {}},
    {"mha", [](ModelConfig& c) { c.num_key_value_heads = c.num_attention_heads; }},
    {"mqa", [](ModelConfig& c) { c.num_key_value_heads = 1; }},
    {"tied", [](ModelConfig& c) { c.tie_word_embeddings = true; }},
    {"qwen2_bias", [](ModelConfig& c) { c = SmallConfig("qwen2"); }},
    {"llama3_rope",
     [](ModelConfig& c) {
       c.rope_theta = 500000;
       c.rope_scaling = {RopeScalingType::kLlama3, 8.0, 1.0, 4.0, 64};
     }},
    {"linear_rope", [](ModelConfig& c) { c.rope_scaling.type = RopeScalingType::kLinear, c.rope_scaling.factor = 2; }},
    {"sliding_window", [](ModelConfig& c) { c = SmallConfig("mistral"), c.sliding_window = 4; }},
};
INSTANTIATE_TEST_SUITE_P(Variants, ModelVariantTest, ::testing::ValuesIn(kVariants),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ModelTest, BatchedStepEqualsOneAtATime) {
  ModelConfig c = SmallConfig();
  auto w = RandomWeights(c, 4);
  Transformer m(c);
  std::vector<std::vector<int32_t>> prompts = {RandomTokens(3, c.vocab_size, 1), RandomTokens(9, c.vocab_size, 2),
                                               RandomTokens(6, c.vocab_size, 3)};
  // One at a time: prefill then 4 greedy-free decode steps with fixed tokens.
  std::vector<std::vector<at::Tensor>> alone(3);
  for (int i = 0; i < 3; ++i) {
    auto cache = *KvCache::Create(c, 1, 32, at::kFloat);
    int32_t s = *cache->Acquire();
    alone[i].push_back((*m.Step(*w, *cache, {{s, prompts[i]}}))[0]);
    for (int step = 0; step < 4; ++step) {
      alone[i].push_back((*m.Step(*w, *cache, {{s, {10 + step + i}}}))[0]);
    }
  }
  // Together, in non-consecutive slots (exercises the gather path) and reversed order.
  auto cache = *KvCache::Create(c, 5, 32, at::kFloat);
  std::vector<int32_t> slots;
  for (int i = 0; i < 5; ++i) slots.push_back(*cache->Acquire());
  std::vector<int32_t> use = {slots[4], slots[0], slots[2]};
  auto pre = m.Step(*w, *cache, {{use[0], prompts[0]}, {use[1], prompts[1]}, {use[2], prompts[2]}});
  ASSERT_TRUE(pre.ok()) << pre.status();
  for (int i = 0; i < 3; ++i) ExpectNear((*pre)[i], alone[i][0], 1e-4);
  for (int step = 0; step < 4; ++step) {
    auto out = m.Step(*w, *cache, {{use[0], {10 + step}}, {use[1], {11 + step}}, {use[2], {12 + step}}});
    ASSERT_TRUE(out.ok()) << out.status();
    for (int i = 0; i < 3; ++i) ExpectNear((*out)[i], alone[i][step + 1], 1e-4);
  }
}

// Decode steps read the KV cache in place (core/decode_attention.h) or gather
// it for ATen's Attend; both give the same logits, for grouped heads, a
// sliding window shorter than the context, sequences of different lengths in
// non-consecutive slots, and a step that mixes in a prefill (which is never a
// decode step).
TEST(ModelTest, DecodeAttentionMatchesTheGatheredPath) {
  ModelConfig c = SmallConfig("mistral");
  c.sliding_window = 5;
  ASSERT_GT(c.num_attention_heads, c.num_key_value_heads);
  auto w = RandomWeights(c, 9);
  Transformer m(c);
  std::vector<std::vector<at::Tensor>> logits(2);
  for (bool direct : {true, false}) {
    SetDecodeAttentionEnabled(direct);
    auto cache = *KvCache::Create(c, 5, 32, at::kFloat);
    std::vector<int32_t> slots;
    for (int i = 0; i < 5; ++i) slots.push_back(*cache->Acquire());
    auto& out = logits[direct ? 0 : 1];
    auto pre = m.Step(*w, *cache,
                      {{slots[3], RandomTokens(2, c.vocab_size, 1)}, {slots[0], RandomTokens(9, c.vocab_size, 2)}});
    ASSERT_TRUE(pre.ok()) << pre.status();
    for (int step = 0; step < 6; ++step) {
      std::vector<SeqStep> batch = {{slots[3], {3 + step}}, {slots[0], {7 + step}}};
      if (step == 2) batch.push_back({slots[1], RandomTokens(4, c.vocab_size, 3)});  // T = 4: the gathered path
      if (step > 2) batch.push_back({slots[1], {11 + step}});
      auto r = m.Step(*w, *cache, batch);
      ASSERT_TRUE(r.ok()) << r.status();
      out.push_back(*r);
    }
  }
  SetDecodeAttentionEnabled(true);
  for (size_t i = 0; i < logits[0].size(); ++i) ExpectNear(logits[0][i], logits[1][i], 1e-5);
}

TEST(ModelTest, PaddedForwardEqualsUnpadded) {
  ModelConfig c = SmallConfig();
  auto w = RandomWeights(c, 6);
  Transformer m(c);
  std::vector<int32_t> a = RandomTokens(5, c.vocab_size, 7), b = RandomTokens(8, c.vocab_size, 8);
  std::vector<int64_t> batch(16, 0), mask(16, 0);
  for (int i = 0; i < 5; ++i) batch[i] = a[i], mask[i] = 1;
  for (int i = 0; i < 8; ++i) batch[8 + i] = b[i], mask[8 + i] = 1;
  at::Tensor out = m.Forward(*w, at::tensor(batch).view({2, 8}), at::tensor(mask).view({2, 8}));
  ExpectNear(out[0].narrow(0, 0, 5), m.Forward(*w, Row(a), at::ones({1, 5}, at::kLong))[0], 1e-4);
  ExpectNear(out[1], m.Forward(*w, Row(b), at::ones({1, 8}, at::kLong))[0], 1e-4);
}

TEST(ModelTest, StepRejectsBadInput) {
  ModelConfig c = SmallConfig();
  auto w = RandomWeights(c, 1);
  Transformer m(c);
  auto cache = *KvCache::Create(c, 1, 8, at::kFloat);
  int32_t s = *cache->Acquire();
  EXPECT_EQ(m.Step(*w, *cache, {{s, {97}}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Step(*w, *cache, {{s, {}}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Step(*w, *cache, {{3, {1}}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(m.Step(*w, *cache, {{s, std::vector<int32_t>(9, 1)}}).ok());
  EXPECT_EQ(cache->length(s), 0);  // nothing was appended by failed steps
  EXPECT_FALSE(cache->Acquire().ok());
}

TEST(WeightsTest, MissingAndMisshapedTensorsAreNamed) {
  ModelConfig c = SmallConfig();
  std::map<std::string, at::Tensor> t;
  for (const TensorSpec& s : ExpectedTensors(c)) t[s.name] = at::zeros(s.shape);
  auto t2 = t;
  t.erase("model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(ModelWeights::Create(c, t).status().message(), "missing weight tensor 'model.layers.1.mlp.up_proj.weight'");
  t2["model.norm.weight"] = at::zeros({31});
  EXPECT_EQ(ModelWeights::Create(c, t2).status().message(), "weight 'model.norm.weight' has shape [31], expected [32]");
}

TEST(WeightsTest, WithReplacedAliasesUntouchedTensors) {
  ModelConfig c = SmallConfig();
  auto w = RandomWeights(c, 9);
  at::Tensor before = w->layers()[0].q.clone();
  auto fused = w->WithReplaced({{"model.layers.0.self_attn.q_proj.weight", before + 1}});
  ASSERT_TRUE(fused.ok());
  EXPECT_TRUE((*fused)->layers()[0].q.equal(before + 1));
  EXPECT_TRUE(w->layers()[0].q.equal(before));                                 // base untouched
  EXPECT_EQ((*fused)->layers()[1].k.data_ptr(), w->layers()[1].k.data_ptr());  // alias, no copy
  EXPECT_FALSE(w->WithReplaced({{"nope", before}}).ok());
  EXPECT_FALSE(w->WithReplaced({{"model.layers.0.self_attn.q_proj.weight", at::zeros({2})}}).ok());
}

TEST(WeightsTest, SaveLoadRoundTripAndUpcast) {
  ModelConfig c = SmallConfig();
  auto w = RandomWeights(c, 10);
  std::string dir = ::testing::TempDir() + "/weights_roundtrip";
  ASSERT_TRUE(w->Save(dir).ok());
  auto back = ModelWeights::Load(c, dir, at::kFloat);
  ASSERT_TRUE(back.ok()) << back.status();
  for (const auto& [name, t] : w->tensors()) EXPECT_TRUE((*back)->Find(name)->equal(t)) << name;
  std::string bf = dir + "_bf16";
  ASSERT_TRUE(w->Save(bf, "bfloat16", /*max_shard_bytes=*/20000).ok());
  EXPECT_TRUE(PathExists(bf + "/model.safetensors.index.json"));
  auto up = ModelWeights::Load(c, bf, at::kFloat);
  ASSERT_TRUE(up.ok()) << up.status();
  const at::Tensor& q = *(*up)->Find("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(q.scalar_type(), at::kFloat);
  EXPECT_TRUE(q.equal(w->layers()[0].q.to(at::kBFloat16).to(at::kFloat)));
}

TEST(TinyModelTest, InitTinyWritesALoadableFolder) {
  std::string dir = ::testing::TempDir() + "/tiny_init";
  TinyModelOptions o;
  o.layers = 2, o.hidden = 64, o.heads = 4, o.kv_heads = 2, o.seed = 5;
  ASSERT_TRUE(InitTinyModel(o, dir).ok());
  auto m = LoadModel(dir, at::kFloat);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->get()->config.num_hidden_layers, 2);
  // Same seed, same bytes.
  std::string dir2 = dir + "_again";
  ASSERT_TRUE(InitTinyModel(o, dir2).ok());
  EXPECT_EQ(*ReadFileToString(dir + "/model.safetensors"), *ReadFileToString(dir2 + "/model.safetensors"));
  o.vocab = 10;
  EXPECT_FALSE(InitTinyModel(o, dir + "_bad").ok());
}

}  // namespace
}  // namespace skillpack
