// Module assignment (the paper's R): parsing, exclusivity, and composition
// under an assignment against the sum built here by hand.
#include "pack/assignment.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "pack/composer.h"
#include "pack/decode.h"
#include "pack/fingerprint.h"
#include "tests/pack/pack_test_util.h"

namespace skillpack {
namespace {

TEST(ModuleAssignmentTest, ParsesJsonAndFlags) {
  auto a = ParseModuleAssignment(Json::parse(R"({"reverse": ["layers.0-1"], "sort": ["layers.2-3", "lm_head"]})"),
                                 "assign.json");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->filters.at("sort"), (std::vector<std::string>{"layers.2-3", "lm_head"}));
  auto f = ParseAssignmentFlags({"reverse=layers.0-1", "sort=layers.2-3,lm_head"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->filters, a->filters);
  EXPECT_EQ(ModuleAssignmentToJson(*a),
            Json::parse(R"({"reverse": ["layers.0-1"], "sort": ["layers.2-3", "lm_head"]})"));

  auto expect_error = [](const StatusOr<ModuleAssignment>& s, const std::string& needle) {
    ASSERT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(needle), std::string::npos) << s.status();
  };
  expect_error(ParseModuleAssignment(Json::parse("[1]"), "x.json"), "x.json");
  expect_error(ParseModuleAssignment(Json::parse(R"({"Bad Name": ["mlp"]})"), "x.json"), "Bad Name");
  expect_error(ParseModuleAssignment(Json::parse(R"({"a": []})"), "x.json"), "x.json.a");
  expect_error(ParseModuleAssignment(Json::parse(R"({"a": ["layers.3-1"]})"), "x.json"), "3-1");
  expect_error(ParseModuleAssignment(Json::parse(R"({"a": [7]})"), "x.json"), "strings");
  expect_error(ParseAssignmentFlags({"layers.0"}), "PACK=PATTERN");
  expect_error(ParseAssignmentFlags({"a="}), "PACK=PATTERN");
  expect_error(ParseAssignmentFlags({"a=mlp,,attn"}), "a=mlp,,attn");
}

TEST(ModuleAssignmentTest, ExclusiveAndApplied) {
  const std::vector<std::string> names = {"model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight",
                                          "lm_head.weight"};
  ModuleAssignment ok;
  ok.filters["a"] = {"layers.0"};
  ok.filters["b"] = {"layers.1", "lm_head"};
  EXPECT_TRUE(CheckAssignmentExclusive(ok, names).ok());
  ModuleAssignment both = ok;
  both.filters["b"] = {"mlp"};
  Status st = CheckAssignmentExclusive(both, names);
  ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << st;

  auto sel = ApplyAssignment(ok, {{"a", 1.0f, {}}, {"b", 0.5f, {}}});
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_EQ((*sel)[1].modules, (std::vector<std::string>{"layers.1", "lm_head"}));
  EXPECT_FLOAT_EQ((*sel)[1].weight, 0.5f);
  EXPECT_EQ(ApplyAssignment(ok, {{"c", 1.0f, {}}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyAssignment(ok, {{"a", 1.0f, {"mlp"}}}).status().code(), absl::StatusCode::kInvalidArgument);
}

// Two packs touching the same modules, composed under an assignment that
// gives layer 0 and the embeddings to one and layer 1 to the other: every
// tensor equals base + the assigned pack's weighted delta, computed by hand.
TEST(ModuleAssignmentTest, CompositionEqualsHandBuiltSum) {
  const ModelConfig c = testutil::SmallConfig();
  auto base = testutil::RandomBase(c, 1);
  const std::string fp = *BaseFingerprint(*base);
  SkillPack pa = testutil::EveryOpPack(21, fp), pb = testutil::EveryOpPack(22, fp);
  pa.manifest.name = "alpha";
  pb.manifest.name = "beta";
  auto da = DecodePack(pa, /*keep_factors=*/true);
  auto db = DecodePack(pb, /*keep_factors=*/false);
  ASSERT_TRUE(da.ok() && db.ok());
  auto assignment = ParseAssignmentFlags({"alpha=layers.0,embed_tokens", "beta=layers.1"});
  ASSERT_TRUE(assignment.ok()) << assignment.status();
  std::vector<std::string> names;
  for (const auto& [n, t] : base->tensors()) names.push_back(n);
  ASSERT_TRUE(CheckAssignmentExclusive(*assignment, names).ok());
  auto sel = ApplyAssignment(*assignment, {{"alpha", 0.7f, {}}, {"beta", 1.3f, {}}});
  ASSERT_TRUE(sel.ok()) << sel.status();
  auto fused = ComposeWeights(*base, *sel, {&*da, &*db});
  ASSERT_TRUE(fused.ok()) << fused.status();

  int from_a = 0, from_b = 0;
  for (const auto& [name, w] : base->tensors()) {
    at::Tensor expect = w.to(at::kFloat).clone();
    const bool in_a = name.find("layers.0.") != std::string::npos || name == "model.embed_tokens.weight";
    const bool in_b = name.find("layers.1.") != std::string::npos;
    auto ia = da->modules.find(name);
    if (in_a && ia != da->modules.end()) {
      expect += 0.7f * ia->second.DenseDelta();
      ++from_a;
    }
    auto ib = db->modules.find(name);
    if (in_b && ib != db->modules.end()) {
      expect += 1.3f * ib->second.DenseDelta();
      ++from_b;
    }
    const at::Tensor* got = (*fused)->Find(name);
    ASSERT_NE(got, nullptr) << name;
    EXPECT_TRUE(at::allclose(got->to(at::kFloat), expect, 1e-5, 1e-6)) << name;
  }
  EXPECT_EQ(from_a, 4);  // embed_tokens, layer 0's norm, down_proj and q_proj
  EXPECT_EQ(from_b, 2);  // layer 1's up_proj and o_proj
}

}  // namespace
}  // namespace skillpack
