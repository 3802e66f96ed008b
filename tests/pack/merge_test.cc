// Merging baselines against small matrices worked by hand.
#include "pack/merge.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace skillpack {
namespace {

at::Tensor M(std::vector<float> v) { return at::tensor(v, at::kFloat).reshape({2, 2}); }

void ExpectEq(const StatusOr<at::Tensor>& got, const at::Tensor& want) {
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(at::allclose(*got, want, 1e-6, 1e-7)) << *got << "\nwant\n" << want;
}

const at::Tensor& D1() {
  static const at::Tensor t = M({1, -2, 0, 3});
  return t;
}
const at::Tensor& D2() {
  static const at::Tensor t = M({1, 3, 4, -1});
  return t;
}
const at::Tensor& D3() {
  static const at::Tensor t = M({0, -1, 2, 5});
  return t;
}

TEST(MergeTest, TaskArithmetic) {
  MergeOptions o;
  o.lambda = 0.5;
  // 0.5 * ([1 -2; 0 3] + [1 3; 4 -1]) = [1 0.5; 2 1]
  ExpectEq(MergeModuleDeltas({D1(), D2()}, o, nullptr), M({1, 0.5, 2, 1}));
}

TEST(MergeTest, TiesTrimElectDisjointMean) {
  MergeOptions o;
  o.method = MergeOptions::Method::kTies;
  o.density = 0.5;  // keep 2 of 4 entries per delta
  // Trimmed: D1 -> [0 -2; 0 3], D2 -> [0 3; 4 0]. Sum [0 1; 4 3]: elected
  // signs [0 +; + +]. Disjoint means: (0,1) only D2's 3 agrees -> 3;
  // (1,0) 4; (1,1) 3; (0,0) no sign -> 0.
  ExpectEq(MergeModuleDeltas({D1(), D2()}, o, nullptr), M({0, 3, 4, 3}));
  // Add D3 -> trimmed [0 0; 2 5]. Sum [0 1; 6 8]: (0,1) 3 (D1's -2 disagrees);
  // (1,0) mean(4, 2) = 3; (1,1) mean(3, 5) = 4.
  ExpectEq(MergeModuleDeltas({D1(), D2(), D3()}, o, nullptr), M({0, 3, 3, 4}));
  // A sign vote lost by mass: -2 and +3 -> +, so -2 is dropped, not averaged in.
  o.lambda = 2;
  ExpectEq(MergeModuleDeltas({M({-2, 0, 0, 0}), M({3, 0, 0, 0})}, o, nullptr), M({6, 0, 0, 0}));
  // density 1 and agreeing signs: the plain mean.
  o.lambda = 1;
  o.density = 1;
  ExpectEq(MergeModuleDeltas({M({1, 2, 3, 4}), M({3, 4, 5, 6})}, o, nullptr), M({2, 3, 4, 5}));
}

TEST(MergeTest, DareDropsAndRescales) {
  MergeOptions o;
  o.method = MergeOptions::Method::kDare;
  o.drop = 0.75;
  at::Tensor d = at::full({200, 100}, 2.0f);
  at::Generator g1 = at::detail::createCPUGenerator(7);
  auto a = MergeModuleDeltas({d}, o, &g1);
  ASSERT_TRUE(a.ok()) << a.status();
  // Each entry dropped (0) or kept and rescaled by 1 / (1 - 0.75) = 4: 2 -> 8.
  EXPECT_TRUE(((*a == 0).logical_or(*a == 8)).all().item<bool>());
  const double kept = (*a == 8).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 0.25, 0.02);                    // 20000 draws: sd 0.003
  EXPECT_NEAR(a->mean().item<double>(), 2.0, 0.2);  // unbiased in expectation
  at::Generator g2 = at::detail::createCPUGenerator(7);
  auto b = MergeModuleDeltas({d}, o, &g2);
  EXPECT_TRUE(at::equal(*a, *b));  // seeded
  at::Generator g3 = at::detail::createCPUGenerator(8);
  EXPECT_FALSE(at::equal(*a, *MergeModuleDeltas({d}, o, &g3)));
  // p = 0 is Task Arithmetic.
  o.drop = 0;
  o.lambda = 0.5;
  ExpectEq(MergeModuleDeltas({D1(), D2()}, o, &g1), M({1, 0.5, 2, 1}));
}

TEST(MergeTest, PacksMergeOverTheUnionOfModules) {
  DecodedPack a, b;
  a.name = "a";
  b.name = "b";
  a.modules["x"] = {"x", D1(), {}, {}};
  a.modules["y"] = {"y", M({1, 1, 1, 1}), {}, {}};
  b.modules["x"] = {"x", D2(), {}, {}};
  MergeOptions o;
  o.lambda = 0.5;
  auto m = MergePacks({&a, &b}, o);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 2u);
  EXPECT_TRUE(at::allclose(m->at("x"), M({1, 0.5, 2, 1})));
  EXPECT_TRUE(at::allclose(m->at("y"), M({0.5, 0.5, 0.5, 0.5})));  // b contributes zeros
  EXPECT_EQ(MergePacks({&a}, o).status().code(), absl::StatusCode::kInvalidArgument);
  b.modules["y"] = {"y", at::ones({3}), {}, {}};
  auto bad = MergePacks({&a, &b}, o);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'y'"), std::string::npos) << bad.status();
}

TEST(MergeTest, OptionsAreChecked) {
  EXPECT_EQ(*ParseMergeMethod("ties"), MergeOptions::Method::kTies);
  EXPECT_FALSE(ParseMergeMethod("mean").ok());
  MergeOptions o;
  o.density = 0;
  EXPECT_NE(ValidateMergeOptions(o).message().find("density"), std::string::npos);
  o = MergeOptions();
  o.drop = 1;
  EXPECT_NE(ValidateMergeOptions(o).message().find("drop"), std::string::npos);
  o = MergeOptions();
  o.method = MergeOptions::Method::kDare;
  EXPECT_EQ(MergeModuleDeltas({D1()}, o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MergeModuleDeltas({D1(), at::ones({3})}, MergeOptions(), nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace skillpack
