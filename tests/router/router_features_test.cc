// Router features from several layers and poolings (the surprisal profile
// among them), the format versions 3 to 5 that store them, training-time augmentation, grouped hold-out and the
// grouped cross-validation that selects a router's options; deep ensembles
// of the router's MLP; the lexical block and format version 6.
#include <random>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/safetensors.h"
#include "core/tensor_util.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "router/router.h"
#include "router/router_train.h"

namespace skillpack {
namespace {

class RouterFeaturesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/router_features_tiny");
    TinyModelOptions o;
    o.layers = 2, o.hidden = 32, o.heads = 2, o.kv_heads = 1, o.seed = 5;
    ASSERT_TRUE(InitTinyModel(o, *dir_).ok());
  }
  void SetUp() override {
    model_ = *LoadModel(*dir_, at::kFloat);
    tok_ = *Tokenizer::FromModelDir(*dir_);
  }
  static std::string* dir_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tok_;
};
std::string* RouterFeaturesTest::dir_ = nullptr;

TEST_F(RouterFeaturesTest, BlocksAreTheLayersPooledAsDocumented) {
  const Transformer& tr = *model_->transformer;
  const ModelWeights& w = *model_->weights;
  // Two prompts of different lengths: the shorter one is padded in the batch.
  std::vector<std::vector<int32_t>> prompts = {tok_->Encode("reverse abc", true, true),
                                               tok_->Encode("Tell me about the sea, please.", true, true)};
  auto f = PromptFeatures(tr, w, prompts, {0, 2}, {Pooling::kMean, Pooling::kMax, Pooling::kLast});
  ASSERT_TRUE(f.ok()) << f.status();
  const int64_t H = 32;
  ASSERT_EQ(f->sizes().vec(), (std::vector<int64_t>{2, 6 * H}));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t T = static_cast<int64_t>(prompts[i].size());
    at::Tensor tokens = at::tensor(std::vector<int64_t>(prompts[i].begin(), prompts[i].end()), at::kLong).view({1, T});
    at::Tensor mask = at::ones({1, T}, at::kLong);
    for (int64_t b = 0; b < 2; ++b) {
      const int64_t layer = b == 0 ? 0 : 2;
      at::Tensor h = tr.HiddenStates(w, tokens, mask, layer)[0];  // [T, H], unpadded
      at::Tensor row = (*f)[i];
      const int64_t base = b * 3 * H;
      EXPECT_TRUE(at::allclose(row.slice(0, base, base + H), h.mean(0), 1e-4, 1e-5)) << "mean, layer " << layer;
      EXPECT_TRUE(at::allclose(row.slice(0, base + H, base + 2 * H), h.amax(0), 1e-4, 1e-5)) << "max, layer " << layer;
      EXPECT_TRUE(at::allclose(row.slice(0, base + 2 * H, base + 3 * H), h[T - 1], 1e-4, 1e-5))
          << "last, layer " << layer;
    }
  }
  // The one-layer mean overload is the first block of the general one.
  auto mean0 = PromptFeatures(tr, w, prompts, 0);
  ASSERT_TRUE(mean0.ok());
  EXPECT_TRUE(at::allclose(*mean0, f->slice(1, 0, H), 1e-5, 1e-6));
}

TEST_F(RouterFeaturesTest, SurprisalPoolingWeighsTokensByTheBaseModelsSurprise) {
  const Transformer& tr = *model_->transformer;
  const ModelWeights& w = *model_->weights;
  // Different lengths (padding in the batch), a one-token prompt and one
  // whose logits take several chunks of positions.
  std::string long_prompt;
  for (int i = 0; i < 6; ++i) long_prompt += "Tell me about the sea, please. ";
  std::vector<std::vector<int32_t>> prompts = {
      tok_->Encode("Write qzxv backwards.", false, false), tok_->Encode("Tell me about the sea, please.", false, false),
      tok_->Encode("a", false, false), tok_->Encode(long_prompt, false, false)};
  ASSERT_EQ(prompts[2].size(), 1u);
  ASSERT_GT(prompts[3].size(), 130u);
  auto f = PromptFeatures(tr, w, prompts, {0, 2}, {Pooling::kMean, Pooling::kSurprisal});
  ASSERT_TRUE(f.ok()) << f.status();
  const int64_t H = 32;
  ASSERT_EQ(f->sizes().vec(), (std::vector<int64_t>{4, 4 * H}));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t T = static_cast<int64_t>(prompts[i].size());
    at::Tensor tokens = at::tensor(std::vector<int64_t>(prompts[i].begin(), prompts[i].end()), at::kLong).view({1, T});
    at::Tensor mask = at::ones({1, T}, at::kLong);
    // By hand, one prompt at a time: s_t = -ln p(token t | before), t >= 1.
    at::Tensor weight = at::zeros({T});
    if (T == 1) {
      weight[0] = 1.0;
    } else {
      at::Tensor logp = at::log_softmax(tr.Forward(w, tokens, mask)[0], -1);  // [T, vocab]
      at::Tensor s = at::empty({T - 1});
      for (int64_t t = 1; t < T; ++t) s[t - 1] = -logp[t - 1][prompts[i][t]];
      weight.slice(0, 1, T).copy_(at::softmax(s / kSurprisalTemperature, 0));
      EXPECT_GT(s.max().item<float>() - s.min().item<float>(), 0.01f) << "the test needs unequal surprisals";
    }
    for (int64_t b = 0; b < 2; ++b) {
      const int64_t layer = b == 0 ? 0 : 2;
      at::Tensor h = tr.HiddenStates(w, tokens, mask, layer)[0];  // [T, H]
      at::Tensor got = (*f)[i].slice(0, (2 * b + 1) * H, (2 * b + 2) * H);
      EXPECT_TRUE(at::allclose(got, (h * weight.unsqueeze(1)).sum(0), 1e-4, 1e-5))
          << "prompt " << i << ", layer " << layer;
      if (T > 2) {
        EXPECT_FALSE(at::allclose(got, h.mean(0), 1e-3, 1e-4)) << "surprisal weights are not uniform";
      }
    }
  }
}

TEST_F(RouterFeaturesTest, SurprisalProfileSummarisesTheTokensSurprisals) {
  const Transformer& tr = *model_->transformer;
  const ModelWeights& w = *model_->weights;
  // Lengths 1, 2 (one surprisal: every window is it), 3 and 4 (windows
  // wider than the prompt take its minimum) and a long one (several logit
  // chunks), batched together so that padding is in play.
  std::string long_prompt;
  for (int i = 0; i < 6; ++i) long_prompt += "Tell me about the sea, please. ";
  std::vector<std::vector<int32_t>> prompts = {tok_->Encode("a", false, false),
                                               tok_->Encode("ab", false, false),
                                               tok_->Encode("abc", false, false),
                                               tok_->Encode("qzxv", false, false),
                                               tok_->Encode("Write qzxv backwards.", false, false),
                                               tok_->Encode(long_prompt, false, false)};
  for (size_t i = 0; i < 4; ++i) ASSERT_EQ(prompts[i].size(), i + 1);
  ASSERT_GT(prompts[5].size(), 130u);
  auto f = PromptFeatures(tr, w, prompts, {1}, {Pooling::kMean, Pooling::kSurprisalProfile});
  ASSERT_TRUE(f.ok()) << f.status();
  const int64_t H = 32, K = kSurprisalProfileSize;
  ASSERT_EQ(f->sizes().vec(), (std::vector<int64_t>{6, H + K}));
  // With the surprisal pooling too, the profile is the same (one forward pass).
  auto both = PromptFeatures(tr, w, prompts, {1}, {Pooling::kSurprisalProfile, Pooling::kSurprisal});
  ASSERT_TRUE(both.ok()) << both.status();
  ASSERT_EQ(both->sizes().vec(), (std::vector<int64_t>{6, H + K}));
  EXPECT_TRUE(at::allclose(both->slice(1, H, H + K), f->slice(1, H, H + K), 1e-5, 1e-6));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t T = static_cast<int64_t>(prompts[i].size());
    at::Tensor tokens = at::tensor(std::vector<int64_t>(prompts[i].begin(), prompts[i].end()), at::kLong).view({1, T});
    at::Tensor mask = at::ones({1, T}, at::kLong);
    // The mean block is still the layer's mean.
    at::Tensor h = tr.HiddenStates(w, tokens, mask, 1)[0];
    EXPECT_TRUE(at::allclose((*f)[i].slice(0, 0, H), h.mean(0), 1e-4, 1e-5)) << "prompt " << i;
    // By hand, one prompt at a time: s_t = -ln p(token t | before), t >= 1.
    std::vector<float> want(K, 0.0f);
    if (T > 1) {
      at::Tensor logp = at::log_softmax(tr.Forward(w, tokens, mask)[0], -1);
      std::vector<double> sv;
      for (int64_t t = 1; t < T; ++t) sv.push_back(-logp[t - 1][prompts[i][t]].item<double>());
      double sum = 0, mx = -1e9;
      for (double x : sv) sum += x, mx = std::max(mx, x);
      want[0] = static_cast<float>(sum / sv.size());
      want[1] = static_cast<float>(mx);
      for (int64_t wdt = 2; wdt <= 4; ++wdt) {
        const size_t n = std::min<size_t>(wdt, sv.size());
        double best = -1e9;
        for (size_t a = 0; a + n <= sv.size(); ++a) {
          double lo = 1e9;
          for (size_t b = a; b < a + n; ++b) lo = std::min(lo, sv[b]);
          best = std::max(best, lo);
        }
        want[wdt] = static_cast<float>(best);
      }
    }
    for (int64_t k = 0; k < K; ++k) {
      EXPECT_NEAR((*f)[i][H + k].item<float>(), want[k], 1e-4) << "prompt " << i << ", profile value " << k;
    }
    if (T > 4) {
      EXPECT_GT(want[1], want[2]) << "the test needs a window minimum below the maximum";
      EXPECT_GE(want[2], want[3]);
      EXPECT_GE(want[3], want[4]);
    }
  }
}

TEST_F(RouterFeaturesTest, BadLayersAndPoolingAreRefused) {
  const auto prompts = std::vector<std::vector<int32_t>>{tok_->Encode("abc", true, true)};
  const Transformer& tr = *model_->transformer;
  const ModelWeights& w = *model_->weights;
  EXPECT_EQ(PromptFeatures(tr, w, prompts, {2, 1}, {Pooling::kMean}).status().message(),
            "router layers must be strictly ascending");
  EXPECT_EQ(PromptFeatures(tr, w, prompts, {0, 3}, {Pooling::kMean}).status().message(),
            "router layer must be in [0, 2], got 3");
  EXPECT_FALSE(PromptFeatures(tr, w, prompts, {0}, {}).ok());
  EXPECT_FALSE(PromptFeatures(tr, w, prompts, {}, {Pooling::kMean}).ok());
  EXPECT_EQ(
      ParsePooling("median").status().message(),
      "router pooling must be mean, max, last, surprisal, surprisal_profile, lexicon or lexicon_max, got 'median'");
  EXPECT_EQ(ParsePoolingList("mean,max,mean").status().message(), "router pooling 'mean' is listed twice");
  EXPECT_EQ(*ParsePoolingList("max,last"), (std::vector<Pooling>{Pooling::kMax, Pooling::kLast}));
}

// A router over `layers` x `pooling` features of hidden size 4, width 3.
StatusOr<std::unique_ptr<Router>> MakeRouter(std::vector<int64_t> layers, std::vector<Pooling> pooling) {
  RouterConfig c{{"none", "a"}, layers.empty() ? 1 : layers.back(), 4, 3, "sha256:x", {}, layers, pooling, ""};
  RouterConfig sized = c;  // Create's defaults, for the tensors' size (checked apart below)
  if (sized.layers.empty()) sized.layers = {sized.layer};
  if (sized.pooling.empty()) sized.pooling = {Pooling::kMean};
  const int64_t F = sized.FeatureSize();
  return Router::Create(c, at::arange(F, at::kFloat), at::ones({F}), at::ones({3, F}), at::zeros({3}),
                        at::zeros({2, 3}), at::zeros({2}));
}

TEST(RouterFileV3Test, FeaturesRoundTripAtTheLowestVersionThatHoldsThem) {
  auto v1 = MakeRouter({}, {});
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ((*v1)->config().layers, (std::vector<int64_t>{1}));
  EXPECT_EQ((*v1)->config().pooling, (std::vector<Pooling>{Pooling::kMean}));
  std::string bytes1 = *(*v1)->Serialize();
  EXPECT_NE(bytes1.find("\"format_version\":\"1\""), std::string::npos);
  EXPECT_EQ(bytes1.find("pooling"), std::string::npos) << "a version 1 file must not carry version 3 fields";

  auto v3 = MakeRouter({0, 2}, {Pooling::kMean, Pooling::kMax});
  ASSERT_TRUE(v3.ok()) << v3.status();
  EXPECT_EQ((*v3)->config().FeatureSize(), 16);
  std::string bytes3 = *(*v3)->Serialize();
  EXPECT_NE(bytes3.find("\"format_version\":\"3\""), std::string::npos);
  auto back = Router::Parse(bytes3, "v3");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->config().layers, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ((*back)->config().pooling, (std::vector<Pooling>{Pooling::kMean, Pooling::kMax}));
  EXPECT_EQ((*back)->config().layer, 2);
  at::Tensor x = at::randn({5, 16});
  EXPECT_TRUE(at::equal((*back)->Scores(x), (*v3)->Scores(x)));

  // The surprisal pooling needs version 4 (a version 3 reader would refuse
  // the name instead of saying the file is newer).
  auto v4 = MakeRouter({0}, {Pooling::kMean, Pooling::kSurprisal});
  ASSERT_TRUE(v4.ok()) << v4.status();
  std::string bytes4 = *(*v4)->Serialize();
  EXPECT_NE(bytes4.find("\"format_version\":\"4\""), std::string::npos);
  auto back4 = Router::Parse(bytes4, "v4");
  ASSERT_TRUE(back4.ok()) << back4.status();
  EXPECT_EQ((*back4)->config().pooling, (std::vector<Pooling>{Pooling::kMean, Pooling::kSurprisal}));
  EXPECT_EQ(*ParsePoolingList("surprisal,mean"), (std::vector<Pooling>{Pooling::kSurprisal, Pooling::kMean}));

  // The surprisal profile: version 5, kSurprisalProfileSize values once
  // after the hidden-state blocks of every layer.
  auto v5 = MakeRouter({0, 2}, {Pooling::kSurprisalProfile, Pooling::kMean});
  ASSERT_TRUE(v5.ok()) << v5.status();
  EXPECT_EQ((*v5)->config().FeatureSize(), 4 * 2 + kSurprisalProfileSize);
  std::string bytes5 = *(*v5)->Serialize();
  EXPECT_NE(bytes5.find("\"format_version\":\"5\""), std::string::npos);
  auto back5 = Router::Parse(bytes5, "v5");
  ASSERT_TRUE(back5.ok()) << back5.status();
  EXPECT_EQ((*back5)->config().pooling, (std::vector<Pooling>{Pooling::kSurprisalProfile, Pooling::kMean}));
  at::Tensor x5 = at::randn({3, 4 * 2 + kSurprisalProfileSize});
  EXPECT_TRUE(at::equal((*back5)->Scores(x5), (*v5)->Scores(x5)));
  EXPECT_EQ(*ParsePoolingList("mean,surprisal_profile"),
            (std::vector<Pooling>{Pooling::kMean, Pooling::kSurprisalProfile}));

  // A bad pooling name in a file is named.
  std::string bad = bytes3;
  const size_t at = bad.find("\\\"max\\\"");
  ASSERT_NE(at, std::string::npos) << bytes3.substr(0, 400);
  bad.replace(at, 7, "\\\"mex\\\"");
  auto st = Router::Parse(bad, "bad");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(
      st.status().message().find(
          "router pooling must be mean, max, last, surprisal, surprisal_profile, lexicon or lexicon_max, got 'mex'"),
      std::string::npos)
      << st.status();
}

TEST(RouterFileV3Test, InconsistentFeatureConfigIsRefused) {
  // layer must be the last of layers; layers ascending; no repeated pooling; shapes follow F.
  RouterConfig c{{"none", "a"}, 1, 4, 3, "", {}, {0, 2}, {Pooling::kMean}, ""};
  auto r = Router::Create(c, at::zeros({8}), at::ones({8}), at::zeros({3, 8}), at::zeros({3}), at::zeros({2, 3}),
                          at::zeros({2}));
  EXPECT_EQ(r.status().message(), "router config layer (1) must be the last of its layers (2)");
  c.layer = 2;
  c.layers = {2, 0};
  r = Router::Create(c, at::zeros({8}), at::ones({8}), at::zeros({3, 8}), at::zeros({3}), at::zeros({2, 3}),
                     at::zeros({2}));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  c.layer = 0;
  c.layers = {0};
  c.pooling = {Pooling::kMax, Pooling::kMax};
  r = Router::Create(c, at::zeros({8}), at::ones({8}), at::zeros({3, 8}), at::zeros({3}), at::zeros({2, 3}),
                     at::zeros({2}));
  EXPECT_EQ(r.status().message(), "router config pooling repeats a kind");
  c.pooling = {Pooling::kMax, Pooling::kLast};
  r = Router::Create(c, at::zeros({4}), at::ones({4}), at::zeros({3, 4}), at::zeros({3}), at::zeros({2, 3}),
                     at::zeros({2}));
  EXPECT_NE(r.status().message().find("feature_mean has shape [4], expected [8]"), std::string::npos) << r.status();
}

std::vector<LabelledPrompt> Sample() {
  return {{"Reverse the string abc", "reverse", "reverse:t0"},
          {"Can you sort 5391?", "sort", "sort:t0"},
          {"Tell me about the sea.", "none", "none:o0"}};
}

TEST(AugmentTest, VariantsAreDeterministicAndKeepLabelAndGroup) {
  RouterAugmentOptions o;
  o.copies = 3;
  std::vector<LabelledPrompt> a = AugmentPrompts(Sample(), o, 7), b = AugmentPrompts(Sample(), o, 7);
  ASSERT_EQ(a.size(), 9u);
  std::set<std::string> texts;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt, b[i].prompt);
    EXPECT_EQ(a[i].label, Sample()[i / 3].label);
    EXPECT_EQ(a[i].group, Sample()[i / 3].group);
    EXPECT_FALSE(a[i].prompt.empty());
    texts.insert(a[i].prompt);
  }
  std::vector<LabelledPrompt> c = AugmentPrompts(Sample(), o, 8);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) differs |= a[i].prompt != c[i].prompt;
  EXPECT_TRUE(differs) << "another seed gives other variants";
  EXPECT_GE(texts.size(), 4u) << "variants should vary";

  // Without any change the variants are the originals; without copies, nothing.
  RouterAugmentOptions same;
  same.copies = 2, same.word_dropout = 0, same.filler = 0, same.case_change = 0;
  std::vector<LabelledPrompt> s = AugmentPrompts(Sample(), same, 1);
  ASSERT_EQ(s.size(), 6u);
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s[i].prompt, Sample()[i / 2].prompt);
  EXPECT_TRUE(AugmentPrompts(Sample(), RouterAugmentOptions{}, 1).empty());
  // Dropping every word still leaves one word of the original.
  RouterAugmentOptions all_dropped;
  all_dropped.copies = 1, all_dropped.word_dropout = 1, all_dropped.filler = 0, all_dropped.case_change = 0;
  for (const LabelledPrompt& p : AugmentPrompts(Sample(), all_dropped, 3)) {
    EXPECT_EQ(p.prompt.find(' '), std::string::npos) << p.prompt;
  }
}

// Prompts of three labels, each label with `groups` groups of `per_group`
// prompts (a group = one phrasing).
std::vector<LabelledPrompt> GroupedData(int groups, int per_group) {
  std::mt19937 rng(3);
  auto word = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>('a' + rng() % 26);
    return s;
  };
  auto digits = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>('0' + rng() % 10);
    return s;
  };
  const char* rev[] = {"Reverse the string ", "please reverse: ", "Spell in reverse order ", "What is reversed: "};
  const char* srt[] = {"Can you sort ", "Sort the digits ", "please sort: ", "Arrange in increasing order "};
  const char* gen[] = {"Tell me about ", "What do you know about ", "Write a short poem about ", "Explain to a child "};
  const char* topics[] = {"the sea", "coffee", "the moon", "music", "trains", "cats"};
  std::vector<LabelledPrompt> out;
  for (int g = 0; g < groups; ++g) {
    for (int i = 0; i < per_group; ++i) {
      out.push_back({rev[g] + word(4 + i % 3), "reverse", "reverse:t" + std::to_string(g)});
      out.push_back({srt[g] + digits(5), "sort", "sort:t" + std::to_string(g)});
      out.push_back({std::string(gen[g]) + topics[rng() % 6], "none", "none:o" + std::to_string(g)});
    }
  }
  return out;
}

TEST_F(RouterFeaturesTest, GroupedHoldoutHoldsOutWholeGroups) {
  RouterTrainOptions o;
  o.width = 16, o.epochs = 30, o.holdout_fraction = 0.25, o.holdout_by_group = true;
  auto r = TrainRouter(*model_->transformer, *model_->weights, *tok_, GroupedData(4, 10), o);
  ASSERT_TRUE(r.ok()) << r.status();
  // One of four groups per label, 10 prompts each.
  EXPECT_EQ(r->holdout_examples, 3 * 10);
  EXPECT_EQ(r->train_examples, 3 * 30);
  // Augmented variants train but are not counted as examples.
  o.augment.copies = 2;
  auto a = TrainRouter(*model_->transformer, *model_->weights, *tok_, GroupedData(4, 10), o);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->train_examples, 3 * 30);
  EXPECT_EQ(a->holdout_examples, 3 * 10);
}

// A deep ensemble is served as one MLP: its scores are the softmax of the
// members' mean logits (= of their mean log-probabilities), member 0 is the
// router ensemble = 1 trains, and the file round-trips unchanged.
TEST_F(RouterFeaturesTest, EnsembleAveragesItsMembersLogitsInOneWiderMlp) {
  RouterTrainOptions o;
  o.width = 16, o.epochs = 30, o.holdout_fraction = 0.25, o.holdout_by_group = true, o.seed = 9;
  const std::vector<LabelledPrompt> data = GroupedData(4, 10);
  auto single = TrainRouter(*model_->transformer, *model_->weights, *tok_, data, o);
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_TRUE(single->members.empty());
  o.ensemble = 3;
  auto ens = TrainRouter(*model_->transformer, *model_->weights, *tok_, data, o);
  ASSERT_TRUE(ens.ok()) << ens.status();
  ASSERT_EQ(ens->members.size(), 3u);
  EXPECT_EQ(ens->router->config().width, 48);
  EXPECT_EQ(ens->holdout_examples, single->holdout_examples);

  std::vector<std::vector<int32_t>> prompts;
  for (const LabelledPrompt& p : GroupedData(2, 3)) prompts.push_back(tok_->Encode(p.prompt, true, true));
  at::Tensor x = *ens->router->Features(*model_->transformer, *model_->weights, prompts);
  at::Tensor mean_log = at::zeros({x.size(0), 3});
  for (const auto& m : ens->members) {
    EXPECT_EQ(m->config().width, 16);
    mean_log += at::log(m->Scores(x)) / 3.0;
  }
  EXPECT_TRUE(at::allclose(ens->router->Scores(x), at::softmax(mean_log, -1), 1e-4, 1e-6));
  EXPECT_TRUE(at::equal(ens->members[0]->Scores(x), single->router->Scores(x))) << "member 0 is the single router";
  EXPECT_FALSE(at::allclose(ens->members[1]->Scores(x), ens->members[0]->Scores(x))) << "members start apart";

  const std::string path = ::testing::TempDir() + "/ensemble_router.safetensors";
  ASSERT_TRUE(ens->router->Save(path).ok());
  auto back = Router::Load(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(at::equal((*back)->Scores(x), ens->router->Scores(x)));

  o.ensemble = 0;
  EXPECT_EQ(TrainRouter(*model_->transformer, *model_->weights, *tok_, data, o).status().message(),
            "ensemble must be in [1, 64]");
}

// General prompts keyed by opener AND topic ("none:oO|none:tT"), every
// combination once, beside single-key task groups.
// The lexical block (Pooling::kLexicon): the texts' Lexicon::Features after
// the hidden-state blocks; a router trained with it records its lexicon's
// fingerprint, is written as version 6, and refuses another lexicon or no text.
TEST_F(RouterFeaturesTest, LexiconBlockReadsThePromptsTextAndTheRouterRecordsItsLexicon) {
  const Transformer& tr = *model_->transformer;
  const ModelWeights& w = *model_->weights;
  auto lex = Lexicon::Default();  // Debian's wordnet-base (scripts/install-deps.sh)
  ASSERT_TRUE(lex.ok()) << lex.status();
  const std::vector<std::string> texts = {"Reverse it.", "Backwards, please.", "Sort it."};
  std::vector<std::vector<int32_t>> ids;
  for (const std::string& t : texts) ids.push_back(tok_->Encode(t, true, true));
  const int64_t H = 32, X = kLexiconFeatureSize;
  auto f = PromptFeatures(tr, w, ids, {0}, {Pooling::kLexicon, Pooling::kMean}, &texts, *lex);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->sizes().vec(), (std::vector<int64_t>{3, H + X}));
  auto mean = PromptFeatures(tr, w, ids, 0);
  ASSERT_TRUE(mean.ok());
  EXPECT_TRUE(at::allclose(f->slice(1, 0, H), *mean, 1e-5, 1e-6));
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<float> want(X);
    (*lex)->Features(texts[i], want.data());
    EXPECT_TRUE(at::equal((*f)[i].slice(0, H, H + X), at::tensor(want))) << texts[i];
  }
  // WordNet's "backwards" ("... the reverse of normal") is nearer "reverse" than "sort".
  auto cosine = [&](int a, int b) {
    at::Tensor x = (*f)[a].slice(0, H, H + X), y = (*f)[b].slice(0, H, H + X);
    return (x.dot(y) / (x.norm() * y.norm())).item<float>();
  };
  EXPECT_GT(cosine(1, 0), cosine(1, 2));
  // Texts and a lexicon are required.
  EXPECT_EQ(PromptFeatures(tr, w, ids, {0}, {Pooling::kLexicon}, nullptr, *lex).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<std::string> two(texts.begin(), texts.begin() + 2);
  EXPECT_EQ(PromptFeatures(tr, w, ids, {0}, {Pooling::kLexicon}, &two, *lex).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PromptFeatures(tr, w, ids, {0}, {Pooling::kLexicon}, &texts, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);

  RouterTrainOptions o;
  o.width = 16, o.epochs = 20, o.holdout_fraction = 0, o.seed = 4, o.pooling = {Pooling::kMean, Pooling::kLexicon};
  const std::vector<LabelledPrompt> data = GroupedData(4, 5);
  auto r = TrainRouter(tr, w, *tok_, data, o);
  ASSERT_TRUE(r.ok()) << r.status();
  const Router& router = *r->router;
  EXPECT_TRUE(router.NeedsText());
  EXPECT_EQ(router.config().lexicon, (*lex)->fingerprint());
  EXPECT_EQ(router.config().FeatureSize(), H + X);
  std::string bytes = *router.Serialize();
  EXPECT_NE(bytes.find("\"format_version\":\"6\""), std::string::npos);
  {
    // Standardised per feature, but the lexical block by one deviation for all its values.
    auto file = SafetensorsFile::FromBuffer(bytes, "v6");
    ASSERT_TRUE(file.ok()) << file.status();
    at::Tensor sd = *TensorFromView(*(*file)->Get("feature_std"), at::kFloat);
    at::Tensor block = sd.slice(0, H, H + X);
    EXPECT_TRUE(at::equal(block, at::full({X}, block[0].item<float>())));
    EXPECT_GT(block[0].item<float>(), 1e-3);
    EXPECT_FALSE(at::equal(sd.slice(0, 0, H), at::full({H}, sd[0].item<float>())));
  }
  auto back = Router::Parse(bytes, "v6");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->config().lexicon, (*lex)->fingerprint());
  EXPECT_TRUE((*back)->CheckFits(model_->config, "", {"reverse", "sort"}).ok());
  auto x = (*back)->Features(tr, w, ids, &texts);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_TRUE(at::equal(*x, *router.Features(tr, w, ids, &texts)));
  EXPECT_EQ((*back)->Features(tr, w, ids).status().code(), absl::StatusCode::kInvalidArgument);
  auto d = (*back)->Route(tr, w, ids[0], RoutingPolicy(), &texts[0]);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->scores.size(), 3u);

  // Another lexicon's fingerprint: refused where the router is installed and where it routes.
  RouterConfig other = router.config();
  other.lexicon = std::string(64, '0');
  other.width = 4;
  at::Tensor m = at::zeros({H + X}), s = at::ones({H + X});
  auto foreign = Router::Create(other, m, s, at::zeros({4, H + X}), at::zeros({4}), at::zeros({3, 4}), at::zeros({3}));
  ASSERT_TRUE(foreign.ok()) << foreign.status();
  Status fits = (*foreign)->CheckFits(model_->config, "", {"reverse", "sort"});
  EXPECT_EQ(fits.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(fits.message().find("lexicon"), std::string::npos) << fits;
  EXPECT_EQ((*foreign)->Features(tr, w, ids, &texts).status().code(), absl::StatusCode::kFailedPrecondition);
  other.lexicon.clear();  // no fingerprint at all
  EXPECT_EQ(Router::Create(other, m, s, at::zeros({4, H + X}), at::zeros({4}), at::zeros({3, 4}), at::zeros({3}))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// The lexical block's maximum over the words (Pooling::kLexiconMax): after
// the mean block when both are listed, whatever their order in `pooling`;
// each block standardised by a deviation of its own; written as version 7.
TEST_F(RouterFeaturesTest, LexiconMaxBlockFollowsTheMeanBlockAndMakesAVersion7Router) {
  const Transformer& tr = *model_->transformer;
  const ModelWeights& w = *model_->weights;
  auto lex = Lexicon::Default();
  ASSERT_TRUE(lex.ok()) << lex.status();
  const std::vector<std::string> texts = {"My password hint says it's abc reversed.", "Sort it.", "Backwards."};
  std::vector<std::vector<int32_t>> ids;
  for (const std::string& t : texts) ids.push_back(tok_->Encode(t, true, true));
  const int64_t H = 32, X = kLexiconFeatureSize;
  const std::vector<Pooling> pooling = {Pooling::kLexiconMax, Pooling::kMean, Pooling::kLexicon};
  EXPECT_EQ(RouterFeatureSize(H, 1, pooling), H + 2 * X);
  auto f = PromptFeatures(tr, w, ids, {0}, pooling, &texts, *lex);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->sizes().vec(), (std::vector<int64_t>{3, H + 2 * X}));
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<float> mean(X), max(X);
    (*lex)->Features(texts[i], mean.data());
    (*lex)->Features(texts[i], max.data(), Lexicon::Combine::kMax);
    EXPECT_TRUE(at::equal((*f)[i].slice(0, H, H + X), at::tensor(mean))) << texts[i];
    EXPECT_TRUE(at::equal((*f)[i].slice(0, H + X, H + 2 * X), at::tensor(max))) << texts[i];
  }
  // The long request's words do not dilute "reversed" in the max block as they do in the mean.
  const int64_t reverse = H + X + LexiconBucket("reverse");
  EXPECT_GT((*f)[0][reverse].item<float>(), 2 * (*f)[0][reverse - X].item<float>());
  EXPECT_EQ(PromptFeatures(tr, w, ids, {0}, {Pooling::kLexiconMax}, nullptr, *lex).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParsePoolingList("mean,lexicon_max"), (std::vector<Pooling>{Pooling::kMean, Pooling::kLexiconMax}));

  RouterTrainOptions o;
  o.width = 16, o.epochs = 20, o.holdout_fraction = 0, o.seed = 4, o.pooling = pooling;
  auto r = TrainRouter(tr, w, *tok_, GroupedData(4, 5), o);
  ASSERT_TRUE(r.ok()) << r.status();
  const Router& router = *r->router;
  EXPECT_TRUE(router.NeedsText());
  EXPECT_EQ(router.config().lexicon, (*lex)->fingerprint());
  std::string bytes = *router.Serialize();
  EXPECT_NE(bytes.find("\"format_version\":\"7\""), std::string::npos);
  auto file = SafetensorsFile::FromBuffer(bytes, "v7");
  ASSERT_TRUE(file.ok()) << file.status();
  at::Tensor sd = *TensorFromView(*(*file)->Get("feature_std"), at::kFloat);
  at::Tensor mean_block = sd.slice(0, H, H + X), max_block = sd.slice(0, H + X, H + 2 * X);
  EXPECT_TRUE(at::equal(mean_block, at::full({X}, mean_block[0].item<float>())));
  EXPECT_TRUE(at::equal(max_block, at::full({X}, max_block[0].item<float>())));
  EXPECT_NE(mean_block[0].item<float>(), max_block[0].item<float>());
  auto back = Router::Parse(bytes, "v7");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->config().pooling, router.config().pooling);
  auto x = (*back)->Features(tr, w, ids, &texts);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_TRUE(at::equal(*x, *router.Features(tr, w, ids, &texts)));
}

TEST(SelectionFoldsTest, ValidatedPromptsShareNoKeyWithTheFoldsTrainingPrompts) {
  std::vector<LabelledPrompt> data;
  for (int t = 0; t < 5; ++t) {
    for (int i = 0; i < 4; ++i) data.push_back({"reverse x", "reverse", "reverse:t" + std::to_string(t)});
  }
  for (int o = 0; o < 6; ++o) {
    for (int t = 0; t < 9; ++t) {
      data.push_back({"general", "none", absl::StrCat("none:o", o, "|none:t", t)});
    }
  }
  std::vector<int64_t> y;
  for (const LabelledPrompt& p : data) y.push_back(p.label == "none" ? 0 : 1);
  const int64_t folds = 3;
  const auto f = SelectionFolds(data, y, folds, 7);
  ASSERT_EQ(f.size(), data.size());
  auto keys = [&](size_t i) {
    std::vector<std::string> k = absl::StrSplit(data[i].group, '|');
    return std::set<std::string>(k.begin(), k.end());
  };
  int64_t validated = 0, crossed = 0, general_validated = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    ASSERT_FALSE(f[i].empty());
    ASSERT_LE(f[i].size(), keys(i).size());
    if (f[i].size() != 1) {
      ++crossed;
      continue;
    }
    ++validated;
    general_validated += y[i] == 0;
    // Nothing trained in this prompt's fold shares one of its keys.
    for (size_t j = 0; j < data.size(); ++j) {
      if (std::find(f[j].begin(), f[j].end(), f[i][0]) != f[j].end()) continue;  // not trained in that fold
      for (const std::string& k : keys(j)) EXPECT_FALSE(keys(i).count(k)) << data[i].group << " / " << data[j].group;
    }
  }
  // One key per task prompt: every one is validated. Two keys: only those
  // whose opener and topic fell in the same fold.
  EXPECT_EQ(validated - general_validated, 20);
  EXPECT_GT(general_validated, 0);
  EXPECT_GT(crossed, 0);
  EXPECT_EQ(validated + crossed, static_cast<int64_t>(data.size()));
  // Every key lands in one fold; single-key prompts of one group share it.
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(f[i], f[(i / 4) * 4]) << "one template, one fold";
  // Deterministic in the seed.
  EXPECT_EQ(SelectionFolds(data, y, folds, 7), f);
}

TEST_F(RouterFeaturesTest, SelectionScoresEveryCandidateAtEveryEpochsAndPicksTheBest) {
  std::vector<RouterCandidate> cands(2);
  cands[0].name = "mean0";
  cands[0].options.width = 16;
  cands[1].name = "meanmax02";
  cands[1].options.width = 16;
  cands[1].options.layers = {0, 2};
  cands[1].options.pooling = {Pooling::kMean, Pooling::kMax};
  cands[1].options.augment.copies = 1;
  RouterSelectOptions so;
  so.folds = 2;
  so.epochs = {5, 20};
  const std::vector<LabelledPrompt> data = GroupedData(4, 6);
  auto sel = SelectRouter(*model_->transformer, *model_->weights, *tok_, data, cands, so);
  ASSERT_TRUE(sel.ok()) << sel.status();
  ASSERT_EQ(sel->scores.size(), 4u);
  double best = 0;
  for (const RouterCvScore& s : sel->scores) {
    best = std::max(best, s.balanced_accuracy);
    EXPECT_GE(s.balanced_accuracy, 0.0);
    EXPECT_LE(s.balanced_accuracy, 1.0);
    ASSERT_EQ(s.per_label.size(), 3u);
    double worst = 1;
    for (const auto& [label, a] : s.per_label) worst = std::min(worst, a);
    EXPECT_EQ(s.worst_label, worst);
  }
  const RouterCvScore& chosen = sel->scores[sel->best];
  EXPECT_EQ(chosen.balanced_accuracy, best);
  EXPECT_EQ(sel->best_options.epochs, chosen.epochs);
  const std::vector<int64_t> chosen_layers =
      chosen.candidate == "mean0" ? std::vector<int64_t>{} : std::vector<int64_t>{0, 2};
  EXPECT_EQ(sel->best_options.layers, chosen_layers);
  // Deterministic.
  auto again = SelectRouter(*model_->transformer, *model_->weights, *tok_, data, cands, so);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < sel->scores.size(); ++i) {
    EXPECT_EQ(again->scores[i].balanced_accuracy, sel->scores[i].balanced_accuracy);
  }
  // Training-only extras: never validated (every candidate is scored on the
  // same prompts), but trained on; labels must be the data's.
  std::vector<RouterCandidate> with_extra = {cands[0], cands[0]};
  with_extra[1].name = "mean0+extra";
  for (const LabelledPrompt& p : GroupedData(2, 6)) {
    if (p.label == "none") with_extra[1].extra.push_back({p.prompt + " tonight", "none", "extra"});
  }
  ASSERT_EQ(with_extra[1].extra.size(), 12u);
  auto ex = SelectRouter(*model_->transformer, *model_->weights, *tok_, data, with_extra, so);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->scores.size(), 4u);
  bool differs = false;
  for (size_t i = 0; i < ex->scores.size(); ++i) {
    EXPECT_EQ(ex->scores[i].validated, static_cast<int64_t>(data.size())) << ex->scores[i].candidate;
    if (i < 2) {
      EXPECT_EQ(ex->scores[i].balanced_accuracy, sel->scores[i].balanced_accuracy) << "same candidate, same data";
    } else {
      differs |= ex->scores[i].per_label != ex->scores[i - 2].per_label;
    }
  }
  EXPECT_TRUE(differs) << "the extras are trained on";
  EXPECT_EQ(ex->best_candidate, ex->best < 2 ? 0u : 1u);
  with_extra[1].extra[0].label = "caesar";
  EXPECT_EQ(SelectRouter(*model_->transformer, *model_->weights, *tok_, data, with_extra, so).status().message(),
            "router candidate mean0+extra: extra prompt label 'caesar' is not a label of the training data");
  // A candidate validated as an ensemble: its folds' members folded at
  // every epochs checkpoint; deterministic, and not the single MLP's scores.
  std::vector<RouterCandidate> ens_cands = {cands[0], cands[0]};
  ens_cands[1].name = "mean0x3";
  ens_cands[1].options.ensemble = 3;
  auto es = SelectRouter(*model_->transformer, *model_->weights, *tok_, data, ens_cands, so);
  ASSERT_TRUE(es.ok()) << es.status();
  ASSERT_EQ(es->scores.size(), 4u);
  EXPECT_EQ(es->scores[0].per_label, sel->scores[0].per_label) << "the single candidate is unchanged";
  auto es2 = SelectRouter(*model_->transformer, *model_->weights, *tok_, data, ens_cands, so);
  ASSERT_TRUE(es2.ok());
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(es2->scores[i].per_label, es->scores[i].per_label);
  if (es->best_candidate == 1) {
    EXPECT_EQ(es->best_options.ensemble, 3);
  }
  // Bad selection options are named.
  so.epochs = {20, 5};
  EXPECT_EQ(SelectRouter(*model_->transformer, *model_->weights, *tok_, data, cands, so).status().message(),
            "router selection: epochs must be positive and strictly ascending");
  so.epochs = {5};
  so.folds = 1;
  EXPECT_EQ(SelectRouter(*model_->transformer, *model_->weights, *tok_, data, cands, so).status().message(),
            "router selection: folds must be >= 2");
}

}  // namespace
}  // namespace skillpack
