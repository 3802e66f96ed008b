#include "pack/calibration.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/tokenizer.h"
#include "core/weights.h"
#include "tests/core/test_models.h"

namespace skillpack {
namespace {

ModelConfig TinyConfig() { return testutil::TestConfig({{"vocab_size", 80}, {"num_hidden_layers", 3}}); }

std::shared_ptr<const ModelWeights> RandomWeights(const ModelConfig& c, uint64_t seed) {
  return testutil::RandomTestWeights(c, seed);
}

// Sequences of different lengths, so batches carry padding.
std::vector<std::vector<int32_t>> Sequences(const ModelConfig& c) {
  at::Generator gen = at::detail::createCPUGenerator(42);
  std::vector<std::vector<int32_t>> out;
  for (int len : {9, 4, 13, 1, 7}) {
    at::Tensor t = at::randint(c.vocab_size, {len}, gen, at::kLong);
    std::vector<int32_t> s;
    for (int i = 0; i < len; ++i) s.push_back(static_cast<int32_t>(t[i].item<int64_t>()));
    out.push_back(s);
  }
  return out;
}

at::Tensor Tokens(const std::vector<int32_t>& s) {
  std::vector<int64_t> v(s.begin(), s.end());
  return at::tensor(v, at::kLong).unsqueeze(0);
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

// The inputs of layer l's modules for one unpadded sequence, written out from
// the Llama equations (independent of Transformer's implementation).
struct Inputs {
  at::Tensor attn, o, mlp, down;  // [T, features]
};
Inputs ManualInputs(const ModelConfig& c, const ModelWeights& w, int64_t l, const at::Tensor& x /*[T, D]*/) {
  const LayerWeights& lw = w.layers()[l];
  const int64_t T = x.size(0), H = c.num_attention_heads, KV = c.num_key_value_heads, hd = c.head_dim;
  Inputs in;
  in.attn = RmsNorm(x, lw.input_norm, c.rms_norm_eps);
  at::Tensor q = at::matmul(in.attn, lw.q.t()).view({T, H, hd}).transpose(0, 1);
  at::Tensor k = at::matmul(in.attn, lw.k.t()).view({T, KV, hd}).transpose(0, 1);
  at::Tensor v = at::matmul(in.attn, lw.v.t()).view({T, KV, hd}).transpose(0, 1);
  at::Tensor inv = 1.0 / at::pow(c.rope_theta, at::arange(0, hd, 2, at::kDouble) / hd);
  at::Tensor ang = at::arange(T, at::kDouble).unsqueeze(1) * inv.unsqueeze(0);  // [T, hd/2]
  at::Tensor cos = at::cat({ang, ang}, -1).cos().to(at::kFloat), sin = at::cat({ang, ang}, -1).sin().to(at::kFloat);
  q = q * cos + RotateHalf(q) * sin;
  k = k * cos + RotateHalf(k) * sin;
  const int64_t groups = H / KV;
  k = k.repeat_interleave(groups, 0);
  v = v.repeat_interleave(groups, 0);
  at::Tensor scores = at::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(hd));
  at::Tensor causal = at::ones({T, T}, at::kBool).triu(1);
  scores = scores.masked_fill(causal, -INFINITY);
  at::Tensor attn = at::matmul(at::softmax(scores, -1), v);  // [H, T, hd]
  in.o = attn.transpose(0, 1).reshape({T, H * hd});
  at::Tensor h = x + at::matmul(in.o, lw.o.t());
  in.mlp = RmsNorm(h, lw.post_attention_norm, c.rms_norm_eps);
  in.down = at::silu(at::matmul(in.mlp, lw.gate.t())) * at::matmul(in.mlp, lw.up.t());
  return in;
}

TEST(CalibrationTest, HessiansMatchIndependentActivations) {
  const ModelConfig c = TinyConfig();
  auto w = RandomWeights(c, 3);
  auto seqs = Sequences(c);
  CaptureOptions opt;
  opt.batch_size = 2;
  auto stats = CaptureCalibration(*w, seqs, opt);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->num_sequences, 5);
  EXPECT_EQ(stats->num_tokens, 9 + 4 + 13 + 1 + 7);
  EXPECT_EQ(stats->hessians.size(), static_cast<size_t>(7 * c.num_hidden_layers));

  Transformer model(c);
  for (int64_t l : {0, 2}) {
    std::vector<at::Tensor> attn, o, mlp, down;
    for (const auto& s : seqs) {
      at::Tensor tokens = Tokens(s);
      at::Tensor x = model.HiddenStates(*w, tokens, at::ones_like(tokens), l)[0];
      Inputs in = ManualInputs(c, *w, l, x);
      attn.push_back(in.attn);
      o.push_back(in.o);
      mlp.push_back(in.mlp);
      down.push_back(in.down);
    }
    auto hess = [](const std::vector<at::Tensor>& xs) {
      at::Tensor x = at::cat(xs, 0).to(at::kDouble);
      return (2 * at::matmul(x.t(), x) / x.size(0)).to(at::kFloat);
    };
    auto name = [l](const char* s) { return LayerTensorName(l, s); };
    const std::map<std::string, at::Tensor> expect = {
        {name("self_attn.q_proj.weight"), hess(attn)}, {name("self_attn.v_proj.weight"), hess(attn)},
        {name("self_attn.o_proj.weight"), hess(o)},    {name("mlp.gate_proj.weight"), hess(mlp)},
        {name("mlp.up_proj.weight"), hess(mlp)},       {name("mlp.down_proj.weight"), hess(down)}};
    for (const auto& [module, h] : expect) {
      const at::Tensor* got = stats->Find(module);
      ASSERT_NE(got, nullptr) << module;
      const double scale = h.abs().max().item<double>();
      EXPECT_TRUE(at::allclose(*got, h, 1e-4, 1e-5 * scale))
          << module << " max diff " << (*got - h).abs().max().item<double>() << " scale " << scale;
    }
  }
  EXPECT_EQ(stats->Find("model.layers.0.input_layernorm.weight"), nullptr);
}

// Hidden states advance once per layer: after layer l they equal HiddenStates(l + 1).
TEST(CalibrationTest, HiddenStatesAdvanceOncePerLayer) {
  const ModelConfig c = TinyConfig();
  auto w = RandomWeights(c, 5);
  auto seqs = Sequences(c);
  Transformer model(c);
  std::vector<int64_t> layers_seen;
  CaptureOptions opt;
  opt.batch_size = 3;
  opt.on_layer_done = [&](int64_t l, const at::Tensor& hidden) {
    layers_seen.push_back(l);
    for (size_t i = 0; i < seqs.size(); ++i) {
      at::Tensor tokens = Tokens(seqs[i]);
      at::Tensor expect = model.HiddenStates(*w, tokens, at::ones_like(tokens), l + 1)[0];
      at::Tensor got = hidden[i].narrow(0, 0, tokens.size(1));
      EXPECT_TRUE(at::allclose(got, expect, 1e-4, 1e-5)) << "layer " << l << " sequence " << i;
    }
  };
  auto stats = CaptureCalibration(*w, seqs, opt);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(layers_seen, (std::vector<int64_t>{0, 1, 2}));
}

TEST(CalibrationTest, LayerForwardChainsToHiddenStates) {
  const ModelConfig c = TinyConfig();
  auto w = RandomWeights(c, 8);
  Transformer model(c);
  at::Tensor tokens = Tokens(Sequences(c)[2]);
  at::Tensor x = at::embedding(w->embed_tokens(), tokens);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    x = model.LayerForward(*w, l, x, at::Tensor(), nullptr);
    EXPECT_TRUE(at::allclose(x, model.HiddenStates(*w, tokens, at::ones_like(tokens), l + 1), 1e-5, 1e-6));
  }
}

TEST(CalibrationTest, RejectsBadSequences) {
  const ModelConfig c = TinyConfig();
  auto w = RandomWeights(c, 3);
  EXPECT_EQ(CaptureCalibration(*w, {}).status().code(), absl::StatusCode::kInvalidArgument);
  auto empty = CaptureCalibration(*w, {{1, 2}, {}});
  ASSERT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("sequence 1"), std::string::npos);
  auto bad = CaptureCalibration(*w, {{1, 200}});
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("200"), std::string::npos);
}

class CalibrationFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = Tokenizer::FromJson(MakeByteLevelTokenizerJson(), "byte-level", MakeByteLevelTokenizerConfigJson());
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = std::move(*t);
  }
  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = ::testing::TempDir() + "/calibration_test_" + name;
    std::ofstream(path) << contents;
    return path;
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(CalibrationFileTest, PlainLines) {
  const std::string path = Write("plain.txt", "hello world\n\n  \nsecond line that is long\nthird\n");
  auto seqs = LoadCalibrationSequences(path, *tok_, 2, 6);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ASSERT_EQ(seqs->size(), 2u);
  const int32_t bos = *tok_->bos_id();
  EXPECT_EQ((*seqs)[0].size(), 6u);  // BOS + 5 of "hello world", cut at 6
  EXPECT_EQ((*seqs)[0][0], bos);
  EXPECT_EQ((*seqs)[0][1], 'h');
  auto all = LoadCalibrationSequences(path, *tok_, 100, 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[2].size(), 6u);  // BOS + "third"
}

TEST_F(CalibrationFileTest, Jsonl) {
  const std::string path = Write("data.jsonl", "{\"text\": \"abc\"}\n{\"prompt\": \"Q:\", \"response\": \"A\"}\n");
  auto seqs = LoadCalibrationSequences(path, *tok_, 10, 100);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ASSERT_EQ(seqs->size(), 2u);
  EXPECT_EQ((*seqs)[0], tok_->Encode("abc", false, true));
  EXPECT_EQ((*seqs)[1], tok_->Encode("Q:A", false, true));

  auto bad = LoadCalibrationSequences(Write("bad.jsonl", "{\"text\": \"a\"}\n{\"nope\": 1}\n"), *tok_, 10, 100);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos) << bad.status();
  auto broken = LoadCalibrationSequences(Write("broken.jsonl", "{\"text\": \n"), *tok_, 10, 100);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadCalibrationSequences("/nonexistent/calib.txt", *tok_, 1, 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadCalibrationSequences(path, *tok_, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadCalibrationSequences(Write("empty.txt", "\n \n"), *tok_, 5, 5).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace skillpack
