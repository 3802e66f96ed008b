#include "core/status.h"

#include <stdexcept>

#include <gtest/gtest.h>

#include "core/file_util.h"
#include "core/json_util.h"

namespace skillpack {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError(absl::StrCat("odd: ", x));
  return x / 2;
}

StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckQuarter(int x) {
  RETURN_IF_ERROR(Quarter(x).status());
  return absl::OkStatus();
}

TEST(StatusTest, MacrosPropagateErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd: 3");
  EXPECT_TRUE(CheckQuarter(4).ok());
  EXPECT_EQ(CheckQuarter(2).code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusTest, AnnotateKeepsCode) {
  Status s = Annotate(absl::NotFoundError("x"), "loading y");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "loading y: x");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "z").ok());
}

TEST(StatusTest, ExceptionsBecomeStatus) {
  EXPECT_EQ(StatusFromException(std::invalid_argument("bad"), "op").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusFromException(std::runtime_error("boom"), "op").message(), "op: boom");
}

TEST(JsonUtilTest, FieldErrorsNameTheField) {
  auto j = *ParseJson(R"({"a": 3, "b": "x", "big": 99999999999})", "cfg");
  EXPECT_EQ(*GetField<int32_t>(j, "a", "cfg"), 3);
  EXPECT_EQ(GetField<int32_t>(j, "b", "cfg").status().message(), "cfg: field 'b' must be an integer, got \"x\"");
  EXPECT_EQ(GetField<int32_t>(j, "c", "cfg").status().message(), "cfg: missing field 'c'");
  EXPECT_FALSE(GetField<int32_t>(j, "big", "cfg").ok());
  EXPECT_EQ(*GetFieldOr<int32_t>(j, "c", 7, "cfg"), 7);
  EXPECT_FALSE(ParseJson("{", "f").ok());
}

TEST(FileUtilTest, AtomicWriteThenRead) {
  std::string dir = ::testing::TempDir() + "/file_util_test";
  ASSERT_TRUE(MakeDirectories(dir).ok());
  std::string path = JoinPath(dir, "x.bin");
  ASSERT_TRUE(WriteFileAtomically(path, std::string("a\0b", 3)).ok());
  EXPECT_EQ(*ReadFileToString(path), std::string("a\0b", 3));
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  EXPECT_EQ(*ReadFileToString(path), "second");
  EXPECT_EQ(ReadFileToString(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace skillpack
