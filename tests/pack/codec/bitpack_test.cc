#include "pack/codec/bitpack.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace skillpack {
namespace {

TEST(BitpackTest, PackedBytes) {
  EXPECT_EQ(PackedBytes(0, 4), 0u);
  EXPECT_EQ(PackedBytes(1, 2), 1u);
  EXPECT_EQ(PackedBytes(4, 2), 1u);
  EXPECT_EQ(PackedBytes(5, 2), 2u);
  EXPECT_EQ(PackedBytes(3, 3), 2u);  // 9 bits
  EXPECT_EQ(PackedBytes(8, 3), 3u);  // 24 bits
  EXPECT_EQ(PackedBytes(7, 4), 4u);
  EXPECT_EQ(PackedBytes(7, 8), 7u);
  EXPECT_EQ(PackedBytes(7, 5), 0u);  // unsupported width
  EXPECT_EQ(PackedBytes(-1, 4), 0u);
}

TEST(BitpackTest, RoundTripEveryWidthRandomCodes) {
  std::mt19937 rng(1234);
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t count : {0, 1, 3, 7, 8, 9, 31, 1001, 4097}) {
      std::uniform_int_distribution<int> dist(0, (1 << bits) - 1);
      std::vector<uint8_t> codes(count);
      for (auto& c : codes) c = static_cast<uint8_t>(dist(rng));
      auto packed = PackCodes(codes, bits);
      ASSERT_TRUE(packed.ok()) << packed.status();
      ASSERT_EQ(packed->size(), PackedBytes(count, bits));
      auto back = UnpackCodes(*packed, count, bits);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, codes) << "bits=" << bits << " count=" << count;
      // Padding bits of the last byte are zero.
      const int64_t used_bits = count * bits;
      if (used_bits % 8 != 0) {
        const uint8_t last = packed->back();
        EXPECT_EQ(last >> (used_bits % 8), 0) << "bits=" << bits;
      }
    }
  }
}

TEST(BitpackTest, HandWorkedBytes) {
  {
    auto p = PackCodes(std::vector<uint8_t>{1, 2, 3, 0}, 2);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, (std::vector<uint8_t>{0x39}));  // 01 | 10<<2 | 11<<4 | 00<<6
  }
  {
    auto p = PackCodes(std::vector<uint8_t>{3, 0, 0, 0, 1}, 2);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, (std::vector<uint8_t>{0x03, 0x01}));
  }
  {
    // 5 | 3<<3 | 7<<6 = 0x1DD: the third code straddles bytes 0 and 1.
    auto p = PackCodes(std::vector<uint8_t>{5, 3, 7}, 3);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, (std::vector<uint8_t>{0xDD, 0x01}));
  }
  {
    // Eight 3-bit codes 0..7 fill exactly three bytes:
    // stream = 0 | 1<<3 | 2<<6 | 3<<9 | 4<<12 | 5<<15 | 6<<18 | 7<<21 =
    // 0xFAC688.
    auto p = PackCodes(std::vector<uint8_t>{0, 1, 2, 3, 4, 5, 6, 7}, 3);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, (std::vector<uint8_t>{0x88, 0xC6, 0xFA}));
    auto back = UnpackCodes(*p, 8, 3);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, (std::vector<uint8_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  }
  {
    auto p = PackCodes(std::vector<uint8_t>{1, 2, 15}, 4);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, (std::vector<uint8_t>{0x21, 0x0F}));
  }
}

TEST(BitpackTest, OutOfRangeCodeIsError) {
  auto p = PackCodes(std::vector<uint8_t>{0, 4}, 2);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  p = PackCodes(std::vector<uint8_t>{8}, 3);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  p = PackCodes(std::vector<uint8_t>{16}, 4);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(PackCodes(std::vector<uint8_t>{255}, 8).ok());
}

TEST(BitpackTest, BadWidthIsError) {
  std::vector<uint8_t> codes = {1, 0};
  EXPECT_EQ(PackCodes(codes, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PackCodes(codes, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnpackCodes(codes, 2, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BitpackTest, ShortBufferIsError) {
  std::vector<uint8_t> packed = {0xFF, 0xFF};
  // 6 codes of 3 bits need 18 bits = 3 bytes.
  EXPECT_EQ(UnpackCodes(packed, 6, 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnpackCodes(packed, 5, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnpackCodes(packed, 3, 8).status().code(), absl::StatusCode::kInvalidArgument);
  // Exactly enough is fine; extra bytes are ignored.
  EXPECT_TRUE(UnpackCodes(packed, 5, 3).ok());
  auto codes = UnpackCodes(packed, 4, 2);
  ASSERT_TRUE(codes.ok());
  EXPECT_EQ(*codes, (std::vector<uint8_t>{3, 3, 3, 3}));
}

TEST(BitpackTest, RawPointerApi) {
  const uint8_t codes[5] = {7, 0, 7, 0, 7};
  uint8_t out[2] = {0xAA, 0xAA};
  ASSERT_TRUE(PackCodes(codes, 5, 3, out).ok());
  // 7 | 0<<3 | 7<<6 | 0<<9 | 7<<12 = 0x71C7
  EXPECT_EQ(out[0], 0xC7);
  EXPECT_EQ(out[1], 0x71);
  uint8_t back[5] = {};
  ASSERT_TRUE(UnpackCodes(out, 2, 5, 3, back).ok());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(back[i], codes[i]);
  EXPECT_EQ(PackCodes(codes, -1, 3, out).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace skillpack
