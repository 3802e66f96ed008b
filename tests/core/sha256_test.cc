// SHA-256 against the FIPS 180-2 test vectors, incremental and one-shot.
#include "core/sha256.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace skillpack {
namespace {

TEST(Sha256Test, Fips180Vectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, IncrementalMillionA) {
  // One million 'a' fed in uneven pieces (crossing block boundaries).
  Sha256 h;
  const std::string chunk(997, 'a');
  int64_t left = 1000000;
  for (int i = 0; left > 0; ++i) {
    const int64_t n = std::min<int64_t>(left, 1 + (i * 37) % 997);
    h.Update(chunk.data(), n);
    left -= n;
  }
  EXPECT_EQ(h.FinalHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  h.Reset();
  h.Update("ab");
  h.Update("c");
  EXPECT_EQ(h.FinalHex(), Sha256Hex("abc"));
}

TEST(Sha256Test, IsSha256Hex) {
  EXPECT_TRUE(IsSha256Hex(Sha256Hex("x")));
  EXPECT_FALSE(IsSha256Hex(""));
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a')));
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'A')));  // lowercase only
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'g')));
}

}  // namespace
}  // namespace skillpack
