#include "core/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace skillpack {
namespace {

constexpr size_t kValid = std::string::npos;

TEST(FirstInvalidUtf8Test, AcceptsWellFormedText) {
  EXPECT_EQ(FirstInvalidUtf8(""), kValid);
  EXPECT_EQ(FirstInvalidUtf8("plain ascii\n"), kValid);
  EXPECT_EQ(FirstInvalidUtf8("caf\xc3\xa9 \xe4\xb8\xad \xe2\x82\xac \xf0\x9f\x99\x82 \xf4\x8f\xbf\xbf"), kValid);
  EXPECT_EQ(FirstInvalidUtf8(std::string("a\0b", 3)), kValid);  // NUL is a character
}

TEST(FirstInvalidUtf8Test, FindsTheFirstBadByte) {
  EXPECT_EQ(FirstInvalidUtf8("ab\xff"), 2u);            // never valid
  EXPECT_EQ(FirstInvalidUtf8("ab\xc3"), 2u);            // truncated at the end
  EXPECT_EQ(FirstInvalidUtf8("a\xc3(b"), 1u);           // bad continuation
  EXPECT_EQ(FirstInvalidUtf8("\xe4\xb8\x41"), 0u);      // bad second continuation
  EXPECT_EQ(FirstInvalidUtf8("\xc0\xaf"), 0u);          // overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("\xe0\x80\xaf"), 0u);      // overlong 3-byte
  EXPECT_EQ(FirstInvalidUtf8("x\xed\xa0\x80"), 1u);     // surrogate U+D800
  EXPECT_EQ(FirstInvalidUtf8("\xf4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("\x80"), 0u);              // lone continuation
  EXPECT_EQ(FirstInvalidUtf8("ok \xc3\xa9 then \xff"), 11u);
}

}  // namespace
}  // namespace skillpack
