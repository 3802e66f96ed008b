#include "router/router.h"

#include <random>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "router/router_train.h"

namespace skillpack {
namespace {

TEST(RoutingPolicyTest, Top1UsesThresholdAndNone) {
  std::vector<std::string> labels = {"none", "math", "code"};
  RoutingPolicy top1 = *ParseRoutingPolicy("top1", 1, 0.5f);
  auto d = DecideRoute({0.1f, 0.7f, 0.2f}, labels, top1);
  ASSERT_EQ(d.packs.size(), 1u);
  EXPECT_EQ(d.packs[0].first, "math");
  EXPECT_FLOAT_EQ(d.packs[0].second, 1.0f);
  EXPECT_EQ(d.scores[0].first, "math");
  EXPECT_TRUE(DecideRoute({0.6f, 0.3f, 0.1f}, labels, top1).packs.empty());  // none wins
  EXPECT_TRUE(DecideRoute({0.3f, 0.4f, 0.3f}, labels, top1).packs.empty());  // under threshold
}

TEST(RoutingPolicyTest, TopKRenormalises) {
  std::vector<std::string> labels = {"none", "a", "b", "c"};
  RoutingPolicy p = *ParseRoutingPolicy("topk", 2, 0.1f);
  auto d = DecideRoute({0.2f, 0.3f, 0.45f, 0.05f}, labels, p);
  ASSERT_EQ(d.packs.size(), 2u);
  EXPECT_EQ(d.packs[0].first, "b");
  EXPECT_NEAR(d.packs[0].second, 0.45 / 0.75, 1e-6);
  EXPECT_EQ(d.packs[1].first, "a");
  EXPECT_NEAR(d.packs[1].second, 0.3 / 0.75, 1e-6);
  EXPECT_FALSE(ParseRoutingPolicy("best", 1, 0.5f).ok());
  EXPECT_FALSE(ParseRoutingPolicy("topk", 0, 0.5f).ok());
  EXPECT_FALSE(ParseRoutingPolicy("top1", 1, 1.5f).ok());
}

// With softmax scores two packs can never both reach 0.5: top-k applies the
// threshold to the chosen set, so a two-skill prompt gets both packs.
TEST(RoutingPolicyTest, TopKSelectsTwoPacksUnderDefaultThreshold) {
  std::vector<std::string> labels = {"none", "reverse", "sort", "arith"};
  RoutingPolicy p = *ParseRoutingPolicy("topk", 2, 0.5f);
  auto two = DecideRoute({0.1f, 0.42f, 0.4f, 0.08f}, labels, p);
  ASSERT_EQ(two.packs.size(), 2u);
  EXPECT_EQ(two.packs[0].first, "reverse");
  EXPECT_EQ(two.packs[1].first, "sort");
  EXPECT_NEAR(two.packs[0].second, 0.42 / 0.82, 1e-6);
  EXPECT_NEAR(two.packs[0].second + two.packs[1].second, 1.0, 1e-6);
  EXPECT_TRUE(two.modules.empty());
  // Top-1 with the same threshold picks nothing for the same scores.
  EXPECT_TRUE(DecideRoute({0.1f, 0.42f, 0.4f, 0.08f}, labels, *ParseRoutingPolicy("top1", 1, 0.5f)).packs.empty());
  // One clear skill: the others are under threshold/2 = 0.25 x the best and stay out.
  auto one = DecideRoute({0.05f, 0.85f, 0.06f, 0.04f}, labels, p);
  ASSERT_EQ(one.packs.size(), 1u);
  EXPECT_EQ(one.packs[0].first, "reverse");
  EXPECT_FLOAT_EQ(one.packs[0].second, 1.0f);
  // A general prompt: the packs together hold 0.3 < 0.5, so none is used.
  EXPECT_TRUE(DecideRoute({0.7f, 0.1f, 0.1f, 0.1f}, labels, p).packs.empty());
  // k = 3 takes the third when it is within the relative bound.
  RoutingPolicy p3 = *ParseRoutingPolicy("topk", 3, 0.5f);
  EXPECT_EQ(DecideRoute({0.1f, 0.3f, 0.3f, 0.3f}, labels, p3).packs.size(), 3u);
  // Threshold 0.8: the bound is 0.4 x the best (0.6): 0.3 stays, 0.1 goes;
  // 0.9 together >= 0.8.
  p3.threshold = 0.8f;
  auto two_of_three = DecideRoute({0.0f, 0.6f, 0.3f, 0.1f}, labels, p3);
  ASSERT_EQ(two_of_three.packs.size(), 2u);
  EXPECT_EQ(two_of_three.packs[1].first, "sort");
  // Threshold 0 is plain top-k: every pack with a positive score, up to k.
  p3.threshold = 0.0f;
  EXPECT_EQ(DecideRoute({0.1f, 0.85f, 0.04f, 0.01f}, labels, p3).packs.size(), 3u);
}

TEST(RoutingPolicyTest, AssignmentGivesEachPackItsModulesAtWeightOne) {
  std::vector<std::string> labels = {"none", "reverse", "sort"};
  RouteDecision d = DecideRoute({0.1f, 0.5f, 0.4f}, labels, *ParseRoutingPolicy("topk", 2, 0.5f));
  ModuleAssignment a;
  a.filters["reverse"] = {"layers.0"};
  a.filters["sort"] = {"layers.1", "lm_head"};
  ApplyRouterAssignment(a, &d);
  ASSERT_EQ(d.packs.size(), 2u);
  ASSERT_EQ(d.modules.size(), 2u);
  EXPECT_EQ(d.packs[0], std::make_pair(std::string("reverse"), 1.0f));
  EXPECT_EQ(d.packs[1], std::make_pair(std::string("sort"), 1.0f));
  EXPECT_EQ(d.modules[0], (std::vector<std::string>{"layers.0"}));
  EXPECT_EQ(d.modules[1], (std::vector<std::string>{"layers.1", "lm_head"}));
}

// Prompt families of four synthetic tasks plus general text.
std::string MakePrompt(const std::string& task, std::mt19937& rng) {
  auto num = [&](int hi) { return std::to_string(std::uniform_int_distribution<int>(0, hi)(rng)); };
  auto word = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>('a' + std::uniform_int_distribution<int>(0, 25)(rng));
    return s;
  };
  if (task == "arith") return num(99) + "+" + num(99) + "=";
  if (task == "reverse") return "reverse: " + word(3 + rng() % 6);
  if (task == "sort") {
    std::string s = "sort:";
    for (int i = 0; i < 5; ++i) s += " " + num(9);
    return s;
  }
  if (task == "lookup")
    return word(1) + "=" + num(9) + ";" + word(1) + "=" + num(9) + ";" + word(1) + "=" + num(9) + " " + word(1) + "?";
  static const char* kGeneral[] = {"Tell me about the weather today.",  "What is the capital of France?",
                                   "Write a short poem about the sea.", "How do birds fly?",
                                   "Explain why the sky looks blue.",   "Give me a recipe for bread.",
                                   "Who wrote this old story?",         "Describe a quiet morning walk."};
  return std::string(kGeneral[rng() % 8]) + " " + word(2);
}

class RouterTrainTest : public ::testing::TestWithParam<int64_t> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/router_tiny");
    TinyModelOptions o;
    o.layers = 2, o.hidden = 64, o.heads = 4, o.kv_heads = 2, o.seed = 11;
    ASSERT_TRUE(InitTinyModel(o, *dir_).ok());
  }
  static std::string* dir_;
};
std::string* RouterTrainTest::dir_ = nullptr;

TEST_P(RouterTrainTest, FourTasksPlusGeneralRouteAtLeast95Percent) {
  auto model = *LoadModel(*dir_, at::kFloat);
  auto tok = *Tokenizer::FromModelDir(*dir_);
  std::mt19937 rng(5);
  std::vector<LabelledPrompt> data;
  for (const char* task : {"arith", "reverse", "sort", "lookup"}) {
    for (int i = 0; i < 100; ++i) data.push_back({MakePrompt(task, rng), task, ""});
  }
  for (int i = 0; i < 150; ++i) data.push_back({MakePrompt("general", rng), "none", ""});
  RouterTrainOptions o;
  o.layer = GetParam();
  o.width = 64;
  o.epochs = 150;
  auto r = TrainRouter(*model->transformer, *model->weights, *tok, data, o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::cout << ConfusionTable(*r);
  EXPECT_GE(r->holdout_accuracy, 0.95);
  EXPECT_EQ(r->holdout_examples, 4 * 20 + 30);
  EXPECT_EQ(r->router->config().labels, (std::vector<std::string>{"none", "arith", "lookup", "reverse", "sort"}));

  // Save / load gives the same decisions.
  std::string path = ::testing::TempDir() + "/router.safetensors";
  ASSERT_TRUE(r->router->Save(path).ok());
  auto back = Router::Load(path);
  ASSERT_TRUE(back.ok()) << back.status();
  RoutingPolicy p;
  std::vector<int32_t> prompt = tok->Encode("12+34=", true, true);
  auto d1 = *r->router->Route(*model->transformer, *model->weights, prompt, p);
  auto d2 = *(*back)->Route(*model->transformer, *model->weights, prompt, p);
  ASSERT_EQ(d1.packs.size(), 1u);
  EXPECT_EQ(d1.packs[0].first, "arith");
  EXPECT_EQ(d2.packs, d1.packs);
  EXPECT_EQ(d2.scores, d1.scores);

  // Fit checks: unknown packs, another base.
  std::set<std::string> all = {"arith", "lookup", "reverse", "sort"};
  EXPECT_TRUE((*back)->CheckFits(model->config, "", all).ok());
  Status missing = (*back)->CheckFits(model->config, "", {"arith", "lookup", "reverse"});
  EXPECT_EQ(missing.message(), "router label 'sort' names a pack that is not in the store");
  ModelConfig other = model->config;
  other.hidden_size = 128;
  EXPECT_EQ((*back)->CheckFits(other, "", all).code(), absl::StatusCode::kFailedPrecondition);
}

// Layer 0 (mean-pooled embeddings) is what meets the latency goal
// (bench/router_bench); layer 1 is the first decoder layer.
INSTANTIATE_TEST_SUITE_P(Layers, RouterTrainTest, ::testing::Values(0, 1),
                         [](const auto& info) { return "layer" + std::to_string(info.param); });

TEST(RouterFileTest, RejectsBadFiles) {
  RouterConfig c{{"none", "a"}, 1, 4, 3, "sha256:x", {}, {}, {}, ""};
  auto r = Router::Create(c, at::zeros({4}), at::ones({4}), at::zeros({3, 4}), at::zeros({3}), at::zeros({2, 3}),
                          at::zeros({2}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(Router::Create(c, at::zeros({4}), at::ones({4}), at::zeros({3, 5}), at::zeros({3}), at::zeros({2, 3}),
                              at::zeros({2}))
                   .ok());
  RouterConfig dup{{"none", "a", "a"}, 1, 4, 3, "", {}, {}, {}, ""};
  EXPECT_FALSE(Router::Create(dup, at::zeros({4}), at::ones({4}), at::zeros({3, 4}), at::zeros({3}), at::zeros({3, 3}),
                              at::zeros({3}))
                   .ok());
  std::string bytes = *(*r)->Serialize();
  EXPECT_TRUE(Router::Parse(bytes, "ok").ok());
  // A newer format version is refused with a message that says so.
  std::string newer = bytes;
  size_t at = newer.find("\"format_version\":\"1\"");
  ASSERT_NE(at, std::string::npos);
  newer[at + 18] = '9';
  auto st = Router::Parse(newer, "newer");
  EXPECT_NE(st.status().message().find("made by a newer skillpack"), absl::string_view::npos) << st.status();
  EXPECT_FALSE(Router::Parse(bytes.substr(0, bytes.size() - 3), "cut").ok());
  EXPECT_FALSE(Router::Parse("garbage", "g").ok());
  // Router::CheckFits with the fingerprint.
  ModelConfig mc;
  mc.hidden_size = 4;
  mc.num_hidden_layers = 2;
  EXPECT_EQ((*r)->CheckFits(mc, "sha256:y", {"a"}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*r)->CheckFits(mc, "sha256:x", {"a"}).ok());
}

TEST(RouterFileTest, AssignmentRoundTripsAsVersion2AndIsChecked) {
  auto make = [](const ModuleAssignment& a) {
    RouterConfig c{{"none", "a", "b"}, 1, 4, 3, "sha256:x", {}, {}, {}, ""};
    c.assignment = a;
    return Router::Create(c, at::zeros({4}), at::ones({4}), at::zeros({3, 4}), at::zeros({3}), at::zeros({3, 3}),
                          at::zeros({3}));
  };
  ModuleAssignment a;
  a.filters["a"] = {"layers.0"};
  a.filters["b"] = {"layers.1", "lm_head"};
  auto r = make(a);
  ASSERT_TRUE(r.ok()) << r.status();
  std::string bytes = *(*r)->Serialize();
  EXPECT_NE(bytes.find("\"format_version\":\"2\""), std::string::npos);
  auto back = Router::Parse(bytes, "assigned");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->config().assignment.filters, a.filters);
  ModelConfig mc;
  mc.hidden_size = 4;
  mc.num_hidden_layers = 2;
  mc.intermediate_size = 8;
  mc.num_attention_heads = 2;
  mc.num_key_value_heads = 2;
  mc.vocab_size = 10;
  mc.head_dim = 2;
  EXPECT_TRUE((*back)->CheckFits(mc, "sha256:x", {"a", "b"}).ok());
  // Overlapping filters: layer 1's modules would get both packs.
  ModuleAssignment overlap = a;
  overlap.filters["a"] = {"layers.0-1"};
  auto o = make(overlap);
  ASSERT_TRUE(o.ok());
  Status st = (*o)->CheckFits(mc, "sha256:x", {"a", "b"});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("assigned to both 'a'"), std::string::npos) << st;
  // Every pack label needs an entry; no entry for a non-label.
  ModuleAssignment partial;
  partial.filters["a"] = {"layers.0"};
  EXPECT_EQ(make(partial).status().code(), absl::StatusCode::kInvalidArgument);
  ModuleAssignment extra = a;
  extra.filters["c"] = {"mlp"};
  EXPECT_EQ(make(extra).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace skillpack
