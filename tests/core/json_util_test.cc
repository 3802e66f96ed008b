// JSON helpers: nesting bounds on outside bytes, parse errors naming the input.
#include "core/json_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace skillpack {
namespace {

using ::testing::HasSubstr;

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(JsonUtilTest, NestingDepthIgnoresBracketsInStrings) {
  EXPECT_EQ(JsonNestingDepth(""), 0);
  EXPECT_EQ(JsonNestingDepth("1"), 0);
  EXPECT_EQ(JsonNestingDepth("{\"a\": [1, {\"b\": []}]}"), 4);
  EXPECT_EQ(JsonNestingDepth("[\"[[[[{{{\"]"), 1);
  EXPECT_EQ(JsonNestingDepth("[\"\\\"[[[\"]"), 1);     // an escaped quote does not end the string
  EXPECT_EQ(JsonNestingDepth("[\"\\\\\", [[]]]"), 3);  // an escaped backslash does not escape the quote
  EXPECT_EQ(JsonNestingDepth(Nested(1000)), 1000);
}

TEST(JsonUtilTest, ParseJsonBoundsNesting) {
  EXPECT_TRUE(ParseJson(Nested(kMaxJsonDepth), "ok.json").ok());
  const Status s = ParseJson(Nested(kMaxJsonDepth + 1), "deep.json").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("deep.json: JSON nested deeper than 64 levels"));
  // A million levels (what once overflowed the stack): refused before parsing.
  EXPECT_EQ(ParseJson("{\"a\":" + Nested(1000000) + "}", "huge").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JsonUtilTest, ParseJsonNamesTheInput) {
  const Status s = ParseJson("{\"a\": ", "spec.json").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("spec.json: not valid JSON"));
}

}  // namespace
}  // namespace skillpack
