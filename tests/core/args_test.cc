#include "core/args.h"

#include <gtest/gtest.h>

namespace skillpack {
namespace {

TEST(ArgsTest, ParsesFormsAndReportsUnknownFlags) {
  auto a = Args::Parse({"gen", "--model", "dir", "--top-k=5", "--stop", "a", "--stop", "b", "--chat", "x"}, {"chat"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a->String("model"), "dir");
  EXPECT_EQ(*a->IntOr("top-k", 0), 5);
  EXPECT_EQ(a->Strings("stop"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(a->Bool("chat"));
  EXPECT_EQ(a->positional(), (std::vector<std::string>{"gen", "x"}));
  EXPECT_TRUE(a->CheckAllUsed().ok());
}

TEST(ArgsTest, Errors) {
  auto a = Args::Parse({"--n", "x", "--typo", "1"}, {});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->IntOr("n", 0).status().message(), "flag --n must be an integer, got 'x'");
  EXPECT_EQ(a->CheckAllUsed().message(), "unknown flag --typo");
  EXPECT_EQ(a->String("missing").status().message(), "missing required flag --missing");
  EXPECT_FALSE(Args::Parse({"--last"}, {}).ok());
}

}  // namespace
}  // namespace skillpack
