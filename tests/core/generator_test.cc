#include "core/generator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/kv_cache.h"
#include "core/model.h"
#include "core/tiny_model.h"
#include "core/weight_delta.h"
#include "core/weights.h"

namespace skillpack {
namespace {

class GeneratorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/generator_tiny");
    TinyModelOptions o;
    o.layers = 2, o.hidden = 64, o.heads = 4, o.kv_heads = 2, o.seed = 3;
    ASSERT_TRUE(InitTinyModel(o, *dir_).ok());
  }
  void SetUp() override {
    model_ = *LoadModel(*dir_, at::kFloat);
    tok_ = *Tokenizer::FromModelDir(*dir_);
    cache_ = *KvCache::Create(model_->config, 4, 256, at::kFloat);
  }
  std::vector<int32_t> Prompt(const std::string& s) { return tok_->Encode(s, true, true); }
  GenerationRequest Greedy(const std::string& s, int n, std::shared_ptr<const ModelWeights> w = nullptr) {
    GenerationRequest r;
    r.prompt_tokens = Prompt(s);
    r.params.temperature = 0;
    r.params.max_new_tokens = n;
    r.params.ignore_eos = true;
    r.weights = w ? w : model_->weights;
    return r;
  }
  std::vector<GenerationOutput> Run(std::vector<GenerationRequest> reqs) {
    auto out = GenerateAll(*model_->transformer, *tok_, *cache_, EosIds(model_->config, *tok_), std::move(reqs));
    EXPECT_TRUE(out.ok()) << out.status();
    return *out;
  }
  // Greedy continuation by recomputing the full forward each step (no cache).
  std::vector<int32_t> ReferenceGreedy(const ModelWeights& w, std::vector<int32_t> ids, int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      std::vector<int64_t> v(ids.begin(), ids.end());
      at::Tensor logits =
          model_->transformer->Forward(w, at::tensor(v).unsqueeze(0), at::ones({1, (int64_t)v.size()}, at::kLong));
      int32_t next = static_cast<int32_t>(logits[0][-1].argmax().item<int64_t>());
      out.push_back(next);
      ids.push_back(next);
    }
    return out;
  }

  static std::string* dir_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<KvCache> cache_;
};
std::string* GeneratorTest::dir_ = nullptr;

TEST_F(GeneratorTest, GreedyEqualsFullRecompute) {
  auto out = Run({Greedy("hello there", 12)});
  EXPECT_EQ(out[0].tokens, ReferenceGreedy(*model_->weights, Prompt("hello there"), 12));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(out[0].prompt_tokens, static_cast<int32_t>(Prompt("hello there").size()));
}

TEST_F(GeneratorTest, BatchOfDifferentLengthsEqualsAlone) {
  std::vector<std::string> prompts = {"a", "a much longer prompt than the others", "mid size"};
  std::vector<std::vector<int32_t>> alone;
  for (auto& p : prompts) alone.push_back(Run({Greedy(p, 10)})[0].tokens);
  std::vector<GenerationRequest> reqs;
  for (auto& p : prompts) reqs.push_back(Greedy(p, 10));
  auto together = Run(std::move(reqs));
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(together[i].tokens, alone[i]) << prompts[i];
}

TEST_F(GeneratorTest, DifferentWeightSetsInFlightTogether) {
  // A second weight set: the base with one matrix changed (aliasing the rest).
  at::Tensor q = *model_->weights->Find("model.layers.0.mlp.down_proj.weight");
  auto other = *model_->weights->WithReplaced({{"model.layers.0.mlp.down_proj.weight", q * 3 + 0.05}});
  auto base_alone = Run({Greedy("xyz", 10)})[0].tokens;
  auto other_alone = Run({Greedy("xyz", 10, other)})[0].tokens;
  ASSERT_NE(base_alone, other_alone);
  auto both = Run({Greedy("xyz", 10), Greedy("xyz", 10, other)});
  EXPECT_EQ(both[0].tokens, base_alone);
  EXPECT_EQ(both[1].tokens, other_alone);
  EXPECT_EQ(both[1].tokens, ReferenceGreedy(*other, Prompt("xyz"), 10));
}

// Factorized deltas on the same base weights: one forward pass, each sequence
// its own correction; equal to the merged weights run alone.
TEST_F(GeneratorTest, SequencesWithDifferentDeltasShareTheBasePass) {
  const std::string name = "model.layers.0.mlp.down_proj.weight";
  const at::Tensor w = *model_->weights->Find(name);
  at::Generator gen = at::detail::createCPUGenerator(4);
  DeltaTerm t{at::randn({w.size(0), 3}, gen), at::randn({3, w.size(1)}, gen) * 0.2, at::Tensor(), 1.5f};
  auto delta = *WeightDelta::Create(model_->config, {{name, {t}}});
  auto merged = *model_->weights->WithReplaced({{name, w + 1.5f * t.us.matmul(t.vt)}});
  const auto want_merged = Run({Greedy("xyz", 10, merged)})[0].tokens;
  const auto want_base = Run({Greedy("xyz", 10)})[0].tokens;
  ASSERT_NE(want_merged, want_base);
  GenerationRequest with = Greedy("xyz", 10);
  with.delta = delta;
  auto both = Run({Greedy("xyz", 10), with, Greedy("abc", 10)});
  EXPECT_EQ(both[0].tokens, want_base);
  EXPECT_EQ(both[1].tokens, want_merged);
  // A second delta with factors over 1 MB: the rows' terms then run group by
  // group instead of through one concatenated GEMM pair; same results.
  DeltaTerm big{at::randn({w.size(0), 2500}, gen) * 0.02, at::randn({2500, w.size(1)}, gen) * 0.02, at::Tensor(), 1.0f};
  auto big_delta = *WeightDelta::Create(model_->config, {{name, {big}}});
  auto big_merged = *model_->weights->WithReplaced({{name, w + big.us.matmul(big.vt)}});
  const auto want_big = Run({Greedy("xyz", 10, big_merged)})[0].tokens;
  ASSERT_NE(want_big, want_base);
  GenerationRequest with_big = Greedy("xyz", 10);
  with_big.delta = big_delta;
  auto three = Run({with, Greedy("xyz", 10), with_big});
  EXPECT_EQ(three[0].tokens, want_merged);
  EXPECT_EQ(three[1].tokens, want_base);
  EXPECT_EQ(three[2].tokens, want_big);
}

// A step that throws for one sequence (here: its delta lives on another
// device) fails that sequence only, with the error; the others run on.
TEST_F(GeneratorTest, ModelErrorFailsOnlyTheSequenceThatCausedIt) {
  const std::string name = "model.layers.1.self_attn.q_proj.weight";
  const at::Tensor w = *model_->weights->Find(name);
  DeltaTerm t{at::zeros({w.size(0), 2}, at::TensorOptions().device(at::kMeta)),
              at::zeros({2, w.size(1)}, at::TensorOptions().device(at::kMeta)), at::Tensor(), 1.0f};
  auto bad = WeightDelta::Create(model_->config, {{name, {t}}});
  ASSERT_TRUE(bad.ok()) << bad.status();
  const auto alone = Run({Greedy("first", 8), Greedy("second one", 8)});
  GenerationRequest broken = Greedy("broken", 8);
  broken.delta = *bad;
  const auto out = Run({Greedy("first", 8), broken, Greedy("second one", 8)});
  EXPECT_EQ(out[1].finish_reason, FinishReason::kError);
  EXPECT_EQ(out[1].status.code(), absl::StatusCode::kInternal) << out[1].status;
  EXPECT_FALSE(out[1].status.message().empty());
  EXPECT_EQ(out[0].tokens, alone[0].tokens);
  EXPECT_EQ(out[2].tokens, alone[1].tokens);
  EXPECT_EQ(out[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(out[2].finish_reason, FinishReason::kLength);
}

TEST_F(GeneratorTest, SeededSamplingIsReproducible) {
  auto sampled = [&](uint64_t seed) {
    GenerationRequest r = Greedy("seed test", 16);
    r.params.temperature = 1.0f;
    r.params.seed = seed;
    return Run({r})[0].tokens;
  };
  EXPECT_EQ(sampled(42), sampled(42));
  EXPECT_NE(sampled(42), sampled(43));
}

TEST_F(GeneratorTest, StopStringTruncatesText) {
  auto full = Run({Greedy("stop test", 24)})[0];
  ASSERT_GE(full.text.size(), 6u);
  std::string stop = full.text.substr(3, 2);
  GenerationRequest r = Greedy("stop test", 24);
  r.params.stop = {stop};
  auto out = Run({r})[0];
  EXPECT_EQ(out.finish_reason, FinishReason::kStop);
  EXPECT_EQ(out.text, full.text.substr(0, full.text.find(stop)));
}

TEST_F(GeneratorTest, StopTokenEndsGeneration) {
  auto full = Run({Greedy("tok", 10)})[0];
  GenerationRequest r = Greedy("tok", 10);
  r.params.stop_token_ids = {full.tokens[4]};
  auto out = Run({r})[0];
  EXPECT_EQ(out.finish_reason, FinishReason::kStop);
  size_t first = std::find(full.tokens.begin(), full.tokens.end(), full.tokens[4]) - full.tokens.begin();
  EXPECT_EQ(out.tokens.size(), first + 1);
}

TEST_F(GeneratorTest, StreamedChunksConcatenateToText) {
  GenerationEngine engine(*model_->transformer, *tok_, *cache_, EosIds(model_->config, *tok_));
  std::string streamed;
  GenerationOutput final_out;
  ASSERT_TRUE(engine
                  .Add(Greedy("stream", 20),
                       [&](const GenerationEvent& e) {
                         streamed += e.new_text;
                         if (e.done) final_out = *e.output;
                       })
                  .ok());
  while (engine.HasWork()) engine.Step();
  EXPECT_EQ(streamed, final_out.text);
  EXPECT_EQ(final_out.tokens.size(), 20u);
}

TEST_F(GeneratorTest, CancelFreesTheSlot) {
  GenerationEngine engine(*model_->transformer, *tok_, *cache_, EosIds(model_->config, *tok_));
  FinishReason reason = FinishReason::kNone;
  auto id = engine.Add(Greedy("cancel me", 200), [&](const GenerationEvent& e) {
    if (e.done) reason = e.output->finish_reason;
  });
  ASSERT_TRUE(id.ok());
  engine.Step();
  engine.Step();
  EXPECT_EQ(cache_->num_free(), 3);
  engine.Cancel(*id);
  engine.Step();
  EXPECT_EQ(reason, FinishReason::kCancelled);
  EXPECT_FALSE(engine.HasWork());
  EXPECT_EQ(cache_->num_free(), 4);
}

TEST_F(GeneratorTest, MoreSequencesThanSlotsWait) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 7; ++i) reqs.push_back(Greedy("q" + std::to_string(i), 5));
  auto out = Run(std::move(reqs));
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(out[i].tokens, ReferenceGreedy(*model_->weights, Prompt("q" + std::to_string(i)), 5));
  }
}

TEST_F(GeneratorTest, BadRequestsAreRefused) {
  GenerationEngine engine(*model_->transformer, *tok_, *cache_, EosIds(model_->config, *tok_));
  GenerationRequest r = Greedy("x", 5);
  r.prompt_tokens.clear();
  EXPECT_EQ(engine.Add(r, nullptr).status().message(), "prompt: no tokens");
  r = Greedy("x", 5);
  r.prompt_tokens.push_back(100000);
  EXPECT_EQ(engine.Add(r, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  r = Greedy("x", 300);
  EXPECT_NE(engine.Add(r, nullptr).status().message().find("exceeds the context length 256"), absl::string_view::npos);
  r = Greedy("x", 5);
  r.params.top_p = 0;
  EXPECT_NE(engine.Add(r, nullptr).status().message().find("top_p"), absl::string_view::npos);
  EXPECT_FALSE(engine.HasWork());
}

}  // namespace
}  // namespace skillpack
