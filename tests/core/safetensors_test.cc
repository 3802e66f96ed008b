// Tests for core/safetensors.h and core/checkpoint.h: format round trips, a
// byte-exact hand-built file, rejection of malformed files (and no crashes on
// truncated / corrupted ones), sharded checkpoints, and fp16 / bf16 conversion.
#include "core/safetensors.h"

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/checkpoint.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;

std::string MakeTempDir() {
  std::string templ = testing::TempDir() + "/safetensors_test_XXXXXX";
  char* made = ::mkdtemp(templ.data());
  EXPECT_NE(made, nullptr);
  return templ;
}

// 8-byte little-endian length + header + data: a file built by hand.
std::string MakeFile(const std::string& header, const std::string& data = "") {
  std::string out;
  uint64_t n = header.size();
  for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>((n >> (8 * b)) & 0xFF));
  return out + header + data;
}

std::string LengthPrefix(uint64_t n) {
  std::string out;
  for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>((n >> (8 * b)) & 0xFF));
  return out;
}

float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint32_t FloatToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// An accepted file's views must be consistent and readable: touch every byte
// (an out-of-bounds view would fault here, or be reported by ASan).
void ExpectViewsInBounds(const SafetensorsFile& f) {
  size_t total = 0;
  unsigned checksum = 0;
  for (const TensorView& t : f.tensors()) {
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * DTypeSize(t.dtype));
    if (t.nbytes > 0) {
      ASSERT_NE(t.data, nullptr);
    }
    for (size_t i = 0; i < t.nbytes; ++i) checksum += t.data[i];
    total += t.nbytes;
  }
  EXPECT_LE(total, f.file_size());
  (void)checksum;
}

// ---------------------------------------------------------------------------
// DType

TEST(DTypeTest, NamesAndSizesRoundTrip) {
  const DType all[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI8,  DType::kU8,
                       DType::kI16, DType::kI32, DType::kI64,  DType::kBool};
  const size_t sizes[] = {4, 2, 2, 1, 1, 2, 4, 8, 1};
  for (size_t i = 0; i < 9; ++i) {
    StatusOr<DType> d = DTypeFromName(DTypeName(all[i]));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, all[i]);
    EXPECT_EQ(DTypeSize(all[i]), sizes[i]);
  }
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_STREQ(DTypeName(DType::kBool), "BOOL");
}

TEST(DTypeTest, UnknownNameIsNamedInError) {
  StatusOr<DType> d = DTypeFromName("F64");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("F64"));
  EXPECT_FALSE(DTypeFromName("f32").ok());
  EXPECT_FALSE(DTypeFromName("").ok());
}

// ---------------------------------------------------------------------------
// Round trips

struct Sample {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::vector<Sample> AllDTypeSamples() {
  std::vector<Sample> s;
  auto raw = [](const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); };
  float f32[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
  s.push_back({"layers.0.f32", DType::kF32, {2, 3}, raw(f32, sizeof(f32))});
  uint16_t f16[3] = {FloatToHalf(1.0f), FloatToHalf(-2.5f), FloatToHalf(65504.0f)};
  s.push_back({"f16", DType::kF16, {3}, raw(f16, sizeof(f16))});
  uint16_t bf16[4] = {FloatToBFloat16(1.0f), FloatToBFloat16(-2.5f), FloatToBFloat16(3.0f), FloatToBFloat16(-7.0f)};
  s.push_back({"bf16", DType::kBF16, {2, 2}, raw(bf16, sizeof(bf16))});
  int8_t i8[5] = {-128, -1, 0, 1, 127};
  s.push_back({"i8", DType::kI8, {5}, raw(i8, sizeof(i8))});
  uint8_t u8[3] = {0, 128, 255};
  s.push_back({"u8", DType::kU8, {3, 1}, raw(u8, sizeof(u8))});
  int16_t i16[2] = {-32768, 32767};
  s.push_back({"i16", DType::kI16, {2}, raw(i16, sizeof(i16))});
  int32_t i32[3] = {std::numeric_limits<int32_t>::min(), 0, std::numeric_limits<int32_t>::max()};
  s.push_back({"i32", DType::kI32, {1, 3}, raw(i32, sizeof(i32))});
  int64_t i64[2] = {std::numeric_limits<int64_t>::min(), 1234567890123LL};
  s.push_back({"i64", DType::kI64, {2}, raw(i64, sizeof(i64))});
  uint8_t b[3] = {1, 0, 1};
  s.push_back({"bool", DType::kBool, {3}, raw(b, sizeof(b))});
  s.push_back({"empty", DType::kF32, {0, 4}, ""});
  float scalar = 42.0f;
  s.push_back({"scalar", DType::kF32, {}, raw(&scalar, sizeof(scalar))});
  return s;
}

void ExpectMatchesSamples(const SafetensorsFile& f, const std::vector<Sample>& samples) {
  ASSERT_EQ(f.tensors().size(), samples.size());
  for (size_t i = 1; i < f.tensors().size(); ++i) {
    EXPECT_LT(f.tensors()[i - 1].name, f.tensors()[i].name);
  }
  for (const Sample& s : samples) {
    const TensorView* t = f.Find(s.name);
    ASSERT_NE(t, nullptr) << s.name;
    EXPECT_EQ(t->dtype, s.dtype) << s.name;
    EXPECT_EQ(t->shape, s.shape) << s.name;
    ASSERT_EQ(t->nbytes, s.bytes.size()) << s.name;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t->data), t->nbytes), s.bytes) << s.name;
    // Written by us: aligned to the element size (within the file image).
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % DTypeSize(t->dtype), 0u) << s.name;
  }
}

TEST(SafetensorsTest, RoundTripEveryDTypeThroughDisk) {
  std::vector<Sample> samples = AllDTypeSamples();
  SafetensorsWriter w;
  for (const Sample& s : samples) {
    ASSERT_TRUE(w.Add(s.name, s.dtype, s.shape, s.bytes.data(), s.bytes.size()).ok()) << s.name;
  }
  w.SetMetadata("format", "pt");
  w.SetMetadata("note", "héllo");
  size_t expected_bytes = 0;
  for (const Sample& s : samples) expected_bytes += s.bytes.size();
  EXPECT_EQ(w.data_bytes(), expected_bytes);

  const std::string path = JoinPath(MakeTempDir(), "x.safetensors");
  ASSERT_TRUE(w.Write(path).ok());
  StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ExpectMatchesSamples(**f, samples);
  EXPECT_EQ((*f)->metadata().size(), 2u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  EXPECT_EQ((*f)->metadata().at("note"), "héllo");
  EXPECT_EQ((*f)->path(), path);
  EXPECT_EQ((*f)->Find("scalar")->numel(), 1);
  EXPECT_EQ((*f)->Find("empty")->numel(), 0);

  // The file on disk is exactly Serialize().
  StatusOr<std::string> disk = ReadFileToString(path);
  ASSERT_TRUE(disk.ok());
  EXPECT_EQ(*disk, w.Serialize());
  EXPECT_EQ(disk->size() % 8, w.data_bytes() % 8);  // header padded to 8
}

TEST(SafetensorsTest, RoundTripInMemory) {
  std::vector<Sample> samples = AllDTypeSamples();
  SafetensorsWriter w;
  for (const Sample& s : samples) {
    ASSERT_TRUE(w.Add(s.name, s.dtype, s.shape, s.bytes.data(), s.bytes.size()).ok());
  }
  StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::FromBuffer(w.Serialize(), "mem");
  ASSERT_TRUE(f.ok()) << f.status();
  ExpectMatchesSamples(**f, samples);
  EXPECT_TRUE((*f)->metadata().empty());
  EXPECT_EQ((*f)->path(), "mem");
}

TEST(SafetensorsTest, EmptyFileRoundTrips) {
  SafetensorsWriter w;
  std::string bytes = w.Serialize();
  EXPECT_EQ(bytes, LengthPrefix(8) + "{}      ");
  StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::FromBuffer(bytes, "empty");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->tensors().empty());
}

TEST(SafetensorsTest, GetAndFind) {
  SafetensorsWriter w;
  int32_t v = 7;
  ASSERT_TRUE(w.Add("w", DType::kI32, {1}, &v, 4).ok());
  auto f = SafetensorsFile::FromBuffer(w.Serialize(), "buf.safetensors");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->Find("nope"), nullptr);
  EXPECT_EQ((*f)->Find(""), nullptr);
  StatusOr<TensorView> missing = (*f)->Get("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope"));
  EXPECT_THAT(missing.status().message(), HasSubstr("buf.safetensors"));
  StatusOr<TensorView> got = (*f)->Get("w");
  ASSERT_TRUE(got.ok());
  int32_t read;
  std::memcpy(&read, got->data, 4);
  EXPECT_EQ(read, 7);
}

TEST(SafetensorsTest, OpenMissingFileIsNotFound) {
  auto f = SafetensorsFile::Open(JoinPath(MakeTempDir(), "absent.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, OpenDirectoryIsAnError) {
  auto f = SafetensorsFile::Open(MakeTempDir());
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("not a regular file"));
}

// ---------------------------------------------------------------------------
// Byte-exact format

TEST(SafetensorsTest, SerializeIsByteExact) {
  SafetensorsWriter w;
  const uint8_t b[3] = {1, 2, 3};
  const float a = 1.0f;  // 0x3F800000, little-endian 00 00 80 3F
  ASSERT_TRUE(w.Add("b", DType::kU8, {3}, b, 3).ok());
  ASSERT_TRUE(w.Add("a", DType::kF32, {1}, &a, 4).ok());
  w.SetMetadata("k", "v");

  // Keys sorted; data laid out by element size (F32 first), then name.
  const std::string json =
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"a\":{\"data_offsets\":[0,4],\"dtype\":\"F32\",\"shape\":[1]},"
      "\"b\":{\"data_offsets\":[4,7],\"dtype\":\"U8\",\"shape\":[3]}}";
  ASSERT_EQ(json.size(), 131u);
  std::string expected;
  // 131 bytes of JSON padded with 5 spaces to 136 = 0x88.
  expected += std::string("\x88\x00\x00\x00\x00\x00\x00\x00", 8);
  expected += json + "     ";
  expected += std::string("\x00\x00\x80\x3F", 4);
  expected += std::string("\x01\x02\x03", 3);
  EXPECT_EQ(w.Serialize(), expected);
}

TEST(SafetensorsTest, ReadsHandWrittenFile) {
  // As another writer might produce: different key order, spaces, padding, an
  // entry field we do not know, and data in non-name order.
  const std::string header =
      "{ \"z\" : {\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]},\n"
      "  \"__metadata__\": {\"format\": \"pt\"},\n"
      "  \"y\": {\"shape\":[], \"data_offsets\":[4,5], \"dtype\":\"BOOL\", \"extra\": null} }   ";
  const std::string data("\x01\x00\xFF\xFF\x01", 5);
  auto f = SafetensorsFile::FromBuffer(MakeFile(header, data), "hand");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->tensors().size(), 2u);
  EXPECT_EQ((*f)->tensors()[0].name, "y");
  EXPECT_EQ((*f)->tensors()[1].name, "z");
  const TensorView* z = (*f)->Find("z");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->dtype, DType::kI16);
  int16_t zv[2];
  std::memcpy(zv, z->data, 4);
  EXPECT_EQ(zv[0], 1);
  EXPECT_EQ(zv[1], -1);
  const TensorView* y = (*f)->Find("y");
  ASSERT_NE(y, nullptr);
  EXPECT_TRUE(y->shape.empty());
  EXPECT_EQ(y->nbytes, 1u);
  EXPECT_EQ(y->data[0], 1);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
}

// ---------------------------------------------------------------------------
// Malformed files

struct BadCase {
  const char* label;
  std::string bytes;
  const char* message;  // expected substring
};

TEST(SafetensorsTest, MalformedFilesAreRejectedWithNamedProblem) {
  const std::string ok_entry = "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
  const std::string four(4, '\0');
  std::vector<BadCase> cases = {
      {"short file", std::string("\x01\x02\x03", 3), "shorter than the 8-byte"},
      {"header longer than file", LengthPrefix(100) + "{}", "truncated"},
      {"absurd header length", LengthPrefix(1ull << 40) + "{}", "exceeds the limit"},
      {"all-ones header length", LengthPrefix(~0ull) + "{}", "exceeds the limit"},
      {"not json", MakeFile("{\"a\": "), "not valid JSON"},
      {"empty header", MakeFile(""), "not valid JSON"},
      {"json array", MakeFile("[1,2]"), "not a JSON object"},
      {"entry not object", MakeFile("{\"wq\": 5}"), "tensor 'wq': entry is not a JSON object"},
      {"missing dtype", MakeFile("{\"wq\":{\"shape\":[1],\"data_offsets\":[0,4]}}", four),
       "tensor 'wq': missing 'dtype'"},
      {"dtype not string", MakeFile("{\"wq\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", four),
       "'dtype' is not a string"},
      {"unknown dtype", MakeFile("{\"wq\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", four),
       "unknown dtype 'F99'"},
      {"missing shape", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", four),
       "tensor 'wq': missing 'shape'"},
      {"shape not array", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", four),
       "'shape' is not an array"},
      {"negative dim", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", four),
       "non-negative integers"},
      {"float dim", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", four),
       "non-negative integers"},
      {"string dim", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", four),
       "non-negative integers"},
      {"dim above int64",
       MakeFile("{\"wq\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
                "\"data_offsets\":[0,4]}}",
                four),
       "non-negative integers"},
      {"numel overflow",
       MakeFile("{\"wq\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],"
                "\"data_offsets\":[0,4]}}",
                four),
       "overflows"},
      {"bytes overflow",
       MakeFile("{\"wq\":{\"dtype\":\"I64\",\"shape\":[4611686018427387904],"
                "\"data_offsets\":[0,4]}}",
                four),
       "overflows"},
      {"missing offsets", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[1]}}", four), "missing 'data_offsets'"},
      {"one offset", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", four),
       "'data_offsets' must be two"},
      {"three offsets", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", four),
       "'data_offsets' must be two"},
      {"negative offset", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", four),
       "'data_offsets' must be two non-negative"},
      {"offsets not array", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\"}}", four),
       "'data_offsets' must be two"},
      {"begin after end", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", four),
       "begin 4 > end 0"},
      {"end beyond buffer", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", four),
       "beyond the 4-byte data buffer"},
      {"huge end",
       MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[1],"
                "\"data_offsets\":[18446744073709551612,18446744073709551615]}}",
                four),
       "beyond"},
      {"size mismatch", MakeFile("{\"wq\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", four),
       "tensor 'wq': data_offsets span 4 bytes but dtype F32 and shape need 8"},
      {"overlap",
       MakeFile("{\"a\":" + ok_entry + ",\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[2,6]}}",
                std::string(6, '\0')),
       "overlaps"},
      {"same range twice", MakeFile("{\"a\":" + ok_entry + ",\"b\":" + ok_entry + "}", four), "overlaps"},
      {"gap", MakeFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", std::string(8, '\0')),
       "belong to no tensor"},
      {"trailing bytes", MakeFile("{\"a\":" + ok_entry + "}", std::string(6, '\0')), "2 trailing bytes"},
      {"metadata value not string", MakeFile("{\"__metadata__\":{\"k\":1}}"),
       "__metadata__ value for 'k' is not a string"},
      {"metadata not object", MakeFile("{\"__metadata__\":[\"k\"]}"), "__metadata__ is not a JSON object"},
      {"duplicate tensor", MakeFile("{\"a\":" + ok_entry + ",\"a\":" + ok_entry + "}", four), "duplicate key 'a'"},
      {"deep nesting", MakeFile("{\"a\":" + std::string(10000, '[') + std::string(10000, ']') + "}"), "nested deeper"},
      {"invalid utf8", MakeFile("{\"\xff\":" + ok_entry + "}", four), "not valid JSON"},
      // Found by tests/fuzz/safetensors_fuzz (corpus regress-empty-tensor-name): the writer refuses
      // an empty name, so the reader accepted files it could not write back.
      {"empty tensor name", MakeFile("{\"\":" + ok_entry + "}", four), "a tensor has an empty name"},
  };
  for (const BadCase& c : cases) {
    StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::FromBuffer(c.bytes, "bad.safetensors");
    ASSERT_FALSE(f.ok()) << c.label;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.label;
    EXPECT_THAT(f.status().message(), HasSubstr("bad.safetensors")) << c.label;
    EXPECT_THAT(f.status().message(), HasSubstr(c.message)) << c.label << ": " << f.status();
  }
}

TEST(SafetensorsTest, MalformedFileOnDiskNamesPath) {
  const std::string path = JoinPath(MakeTempDir(), "broken.safetensors");
  ASSERT_TRUE(WriteFileAtomically(path, MakeFile("{\"wq\":{\"dtype\":\"Q4\",\"shape\":[1],"
                                                 "\"data_offsets\":[0,1]}}",
                                                 "x"))
                  .ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr(path));
  EXPECT_THAT(f.status().message(), HasSubstr("wq"));
  EXPECT_THAT(f.status().message(), HasSubstr("Q4"));

  const std::string tiny = JoinPath(MakeTempDir(), "tiny.safetensors");
  ASSERT_TRUE(WriteFileAtomically(tiny, "").ok());
  auto g = SafetensorsFile::Open(tiny);
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(), HasSubstr("shorter"));
}

std::string ValidSampleFile() {
  SafetensorsWriter w;
  float f[4] = {1, 2, 3, 4};
  uint16_t h[3] = {1, 2, 3};
  uint8_t u[1] = {9};
  EXPECT_TRUE(w.Add("model.embed", DType::kF32, {2, 2}, f, sizeof(f)).ok());
  EXPECT_TRUE(w.Add("h", DType::kF16, {3}, h, sizeof(h)).ok());
  EXPECT_TRUE(w.Add("u", DType::kU8, {1}, u, 1).ok());
  EXPECT_TRUE(w.Add("z", DType::kI32, {0}, nullptr, 0).ok());
  w.SetMetadata("format", "pt");
  return w.Serialize();
}

TEST(SafetensorsTest, EveryTruncationIsAnError) {
  const std::string valid = ValidSampleFile();
  ASSERT_TRUE(SafetensorsFile::FromBuffer(valid, "full").ok());
  for (size_t len = 0; len < valid.size(); ++len) {
    auto f = SafetensorsFile::FromBuffer(valid.substr(0, len), "cut");
    EXPECT_FALSE(f.ok()) << "length " << len;
  }
}

TEST(SafetensorsTest, CorruptedHeaderBytesNeverCrash) {
  const std::string valid = ValidSampleFile();
  uint64_t header_len = 0;
  for (int b = 7; b >= 0; --b) header_len = (header_len << 8) | static_cast<uint8_t>(valid[b]);
  const size_t prefix = 8 + header_len;
  const unsigned char flips[] = {0x01, 0x02, 0x10, 0x20, 0x40, 0x80, 0xFF};
  int accepted = 0, rejected = 0;
  for (size_t i = 0; i < prefix; ++i) {
    for (unsigned char x : flips) {
      std::string bad = valid;
      bad[i] = static_cast<char>(bad[i] ^ x);
      auto f = SafetensorsFile::FromBuffer(bad, "flipped");
      if (f.ok()) {
        ++accepted;
        ExpectViewsInBounds(**f);
      } else {
        ++rejected;
        EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
      }
    }
  }
  // Replacing header bytes with JSON-significant characters.
  std::mt19937 rng(1234);
  const char specials[] = "\"{}[],:-0123456789eE.\\ ntf";
  for (int iter = 0; iter < 20000; ++iter) {
    std::string bad = valid;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t pos = 8 + rng() % header_len;
      bad[pos] = specials[rng() % (sizeof(specials) - 1)];
    }
    auto f = SafetensorsFile::FromBuffer(bad, "mutated");
    if (f.ok()) {
      ++accepted;
      ExpectViewsInBounds(**f);
    } else {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  (void)accepted;
}

// ---------------------------------------------------------------------------
// Writer errors

TEST(SafetensorsWriterTest, RejectsBadTensors) {
  SafetensorsWriter w;
  float v[2] = {1, 2};
  ASSERT_TRUE(w.Add("a", DType::kF32, {2}, v, 8).ok());

  Status dup = w.Add("a", DType::kF32, {2}, v, 8);
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dup.message(), HasSubstr("duplicate"));

  Status size = w.Add("b", DType::kF32, {3}, v, 8);
  EXPECT_EQ(size.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(size.message(), HasSubstr("need 12"));

  Status neg = w.Add("c", DType::kF32, {-2}, v, 8);
  EXPECT_THAT(neg.message(), HasSubstr("negative dimension"));

  EXPECT_THAT(w.Add("", DType::kF32, {2}, v, 8).message(), HasSubstr("empty"));
  EXPECT_THAT(w.Add("__metadata__", DType::kF32, {2}, v, 8).message(), HasSubstr("reserved"));
  EXPECT_THAT(w.Add("bad\xff", DType::kF32, {2}, v, 8).message(), HasSubstr("UTF-8"));
  EXPECT_THAT(w.Add("big", DType::kF32, {1LL << 62, 8}, v, 8).message(), HasSubstr("overflows"));
  EXPECT_THAT(w.Add("null", DType::kF32, {2}, nullptr, 8).message(), HasSubstr("null"));

  // Failed adds leave the writer unchanged.
  EXPECT_EQ(w.data_bytes(), 8u);
  auto f = SafetensorsFile::FromBuffer(w.Serialize(), "w");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->tensors().size(), 1u);
}

TEST(SafetensorsWriterTest, WriteSafetensorsFileRejectsDuplicates) {
  float v = 1;
  std::vector<TensorToWrite> t = {{"x", DType::kF32, {1}, &v, 4}, {"x", DType::kF32, {1}, &v, 4}};
  const std::string path = JoinPath(MakeTempDir(), "d.safetensors");
  Status st = WriteSafetensorsFile(path, t, {});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("duplicate"));
  EXPECT_FALSE(PathExists(path));
}

// ---------------------------------------------------------------------------
// Checkpoints

struct OwnedTensors {
  std::vector<std::vector<float>> storage;
  std::vector<TensorToWrite> list;
};

OwnedTensors MakeTensors(int count, int elems) {
  OwnedTensors o;
  o.storage.resize(count);
  for (int i = 0; i < count; ++i) {
    o.storage[i].resize(elems);
    for (int j = 0; j < elems; ++j) o.storage[i][j] = static_cast<float>(i * 1000 + j);
  }
  for (int i = 0; i < count; ++i) {
    // Names deliberately not in sorted order.
    o.list.push_back({absl::StrCat("layers.", count - i, ".w"),
                      DType::kF32,
                      {elems},
                      o.storage[i].data(),
                      o.storage[i].size() * sizeof(float)});
  }
  return o;
}

void ExpectCheckpointHolds(const Checkpoint& c, const OwnedTensors& o) {
  std::vector<std::string> names = c.names();
  ASSERT_EQ(names.size(), o.list.size());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const TensorToWrite& t : o.list) {
    StatusOr<TensorView> v = c.Get(t.name);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->shape, t.shape);
    EXPECT_EQ(v->dtype, t.dtype);
    ASSERT_EQ(v->nbytes, t.nbytes);
    EXPECT_EQ(std::memcmp(v->data, t.data, t.nbytes), 0) << t.name;
  }
}

TEST(CheckpointTest, SingleFile) {
  const std::string dir = JoinPath(MakeTempDir(), "model");
  OwnedTensors o = MakeTensors(3, 10);
  ASSERT_TRUE(WriteCheckpoint(dir, o.list, 1 << 20, {{"format", "pt"}}).ok());
  EXPECT_TRUE(PathExists(JoinPath(dir, "model.safetensors")));
  EXPECT_FALSE(PathExists(JoinPath(dir, "model.safetensors.index.json")));
  auto c = Checkpoint::Open(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectCheckpointHolds(**c, o);
  ASSERT_EQ((*c)->files().size(), 1u);
  EXPECT_EQ((*c)->files()[0]->metadata().at("format"), "pt");
  EXPECT_EQ((*c)->total_bytes(), 120u);
  EXPECT_EQ((*c)->Find("absent"), nullptr);
  StatusOr<TensorView> missing = (*c)->Get("absent");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("absent"));
}

TEST(CheckpointTest, ShardedWriteAndReadBack) {
  const std::string dir = JoinPath(MakeTempDir(), "model");
  OwnedTensors o = MakeTensors(5, 10);  // 40 bytes each
  ASSERT_TRUE(WriteCheckpoint(dir, o.list, 100, {{"format", "pt"}}).ok());
  // Greedy: [40+40], [40+40], [40].
  for (const char* shard :
       {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"}) {
    EXPECT_TRUE(PathExists(JoinPath(dir, shard))) << shard;
  }
  EXPECT_FALSE(PathExists(JoinPath(dir, "model.safetensors")));
  StatusOr<Json> index = ReadJsonFile(JoinPath(dir, "model.safetensors.index.json"));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ((*index)["metadata"]["total_size"].get<uint64_t>(), 200u);
  EXPECT_EQ((*index)["weight_map"].size(), 5u);
  EXPECT_EQ((*index)["weight_map"]["layers.5.w"], "model-00001-of-00003.safetensors");
  EXPECT_EQ((*index)["weight_map"]["layers.1.w"], "model-00003-of-00003.safetensors");

  auto c = Checkpoint::Open(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectCheckpointHolds(**c, o);
  EXPECT_EQ((*c)->files().size(), 3u);
  EXPECT_EQ((*c)->files()[2]->metadata().at("format"), "pt");
  EXPECT_EQ((*c)->total_bytes(), 200u);

  // Rewriting as one file replaces the index.
  ASSERT_TRUE(WriteCheckpoint(dir, o.list, 0).ok());
  EXPECT_FALSE(PathExists(JoinPath(dir, "model.safetensors.index.json")));
  auto single = Checkpoint::Open(dir);
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ((*single)->files().size(), 1u);
  ExpectCheckpointHolds(**single, o);
}

TEST(CheckpointTest, OversizedTensorGetsOwnShard) {
  const std::string dir = JoinPath(MakeTempDir(), "model");
  OwnedTensors o = MakeTensors(3, 10);
  ASSERT_TRUE(WriteCheckpoint(dir, o.list, 16).ok());
  EXPECT_TRUE(PathExists(JoinPath(dir, "model-00003-of-00003.safetensors")));
  auto c = Checkpoint::Open(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectCheckpointHolds(**c, o);
}

TEST(CheckpointTest, WriteRejectsBadInput) {
  const std::string dir = JoinPath(MakeTempDir(), "model");
  float v = 1;
  std::vector<TensorToWrite> dup = {{"x", DType::kF32, {1}, &v, 4}, {"x", DType::kF32, {1}, &v, 4}};
  EXPECT_THAT(WriteCheckpoint(dir, dup, 0).message(), HasSubstr("duplicate"));
  std::vector<TensorToWrite> bad = {{"x", DType::kF32, {2}, &v, 4}};
  EXPECT_EQ(WriteCheckpoint(dir, bad, 0).code(), absl::StatusCode::kInvalidArgument);
}

class BrokenCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = JoinPath(MakeTempDir(), "model");
    tensors_ = MakeTensors(4, 10);
    ASSERT_TRUE(WriteCheckpoint(dir_, tensors_.list, 80).ok());  // 2 shards of 2
    index_path_ = JoinPath(dir_, "model.safetensors.index.json");
    StatusOr<Json> index = ReadJsonFile(index_path_);
    ASSERT_TRUE(index.ok());
    index_ = *index;
    ASSERT_TRUE(Checkpoint::Open(dir_).ok());
  }
  void WriteIndex() { ASSERT_TRUE(WriteFileAtomically(index_path_, index_.dump()).ok()); }
  Status OpenStatus() { return Checkpoint::Open(dir_).status(); }

  std::string dir_, index_path_;
  OwnedTensors tensors_;
  Json index_;
};

TEST_F(BrokenCheckpointTest, MissingShard) {
  ASSERT_EQ(::unlink(JoinPath(dir_, "model-00002-of-00002.safetensors").c_str()), 0);
  Status st = OpenStatus();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("model-00002-of-00002.safetensors"));
}

TEST_F(BrokenCheckpointTest, IndexNamesAbsentTensor) {
  index_["weight_map"]["ghost"] = "model-00001-of-00002.safetensors";
  WriteIndex();
  Status st = OpenStatus();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("ghost"));
  EXPECT_THAT(st.message(), HasSubstr("does not contain"));
}

TEST_F(BrokenCheckpointTest, IndexNamesNonexistentShard) {
  index_["weight_map"]["layers.1.w"] = "model-00009-of-00009.safetensors";
  WriteIndex();
  Status st = OpenStatus();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("model-00009-of-00009.safetensors"));
}

TEST_F(BrokenCheckpointTest, TensorInTwoShards) {
  // Rewrite shard 2 so it also holds shard 1's first tensor.
  std::vector<TensorToWrite> both = tensors_.list;  // all four
  ASSERT_TRUE(
      WriteSafetensorsFile(JoinPath(dir_, "model-00002-of-00002.safetensors"), {both[0], both[2], both[3]}, {}).ok());
  Status st = OpenStatus();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr(both[0].name));
  EXPECT_THAT(st.message(), HasSubstr("model-00001-of-00002.safetensors"));
}

TEST_F(BrokenCheckpointTest, ShardOutsideFolder) {
  index_["weight_map"]["layers.1.w"] = "../model-00001-of-00002.safetensors";
  WriteIndex();
  EXPECT_THAT(OpenStatus().message(), HasSubstr("not a file in the folder"));
}

TEST_F(BrokenCheckpointTest, MalformedIndex) {
  ASSERT_TRUE(WriteFileAtomically(index_path_, "{\"weight_map\": 3}").ok());
  EXPECT_THAT(OpenStatus().message(), HasSubstr("weight_map"));
  ASSERT_TRUE(WriteFileAtomically(index_path_, "{\"weight_map\": {\"a\": 1}}").ok());
  EXPECT_THAT(OpenStatus().message(), HasSubstr("'a' is not a string"));
  ASSERT_TRUE(WriteFileAtomically(index_path_, "not json").ok());
  EXPECT_EQ(OpenStatus().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CheckpointTest, EmptyFolderIsNotFound) {
  Status st = Checkpoint::Open(MakeTempDir()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("model.safetensors"));
}

// ---------------------------------------------------------------------------
// fp16 / bf16

TEST(HalfTest, KnownValues) {
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC100), -2.5f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(HalfToFloat(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(HalfToFloat(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7C01)));
  EXPECT_EQ(HalfToFloat(0x8000), 0.0f);
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));

  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(-2.5f), 0xC100);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(FloatToHalf(-std::ldexp(1.0f, -24)), 0x8001);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(FloatToHalf(-std::numeric_limits<float>::infinity()), 0xFC00);
  const uint16_t nan = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  const uint16_t snan = FloatToHalf(BitsToFloat(0x7F800001));  // payload in low bits only
  EXPECT_EQ(snan & 0x7C00, 0x7C00);
  EXPECT_NE(snan & 0x03FF, 0);
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(1e10f), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::max()), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::denorm_min()), 0x0000);
}

TEST(HalfTest, RoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 0x3C00 and 0x3C01: ties to even (0x3C00).
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // 1 + 3*2^-11 is halfway between 0x3C01 and 0x3C02: ties to 0x3C02.
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // Just above the first midpoint rounds up.
  EXPECT_EQ(FloatToHalf(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
  // 65520 is halfway between 65504 (odd mantissa) and 65536: ties up to inf.
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::nextafter(65520.0f, 0.0f)), 0x7BFF);
  // Subnormals: 2^-25 is halfway between 0 and 2^-24: ties to 0.
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(FloatToHalf(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  // 3*2^-25 is halfway between 1 and 2 subnormal units: ties to 2.
  EXPECT_EQ(FloatToHalf(3 * std::ldexp(1.0f, -25)), 0x0002);
  // Largest subnormal + half a unit rounds (to even) into the smallest normal.
  EXPECT_EQ(FloatToHalf(std::ldexp(2047.0f, -25)), 0x0400);
}

TEST(HalfTest, ExhaustiveRoundTripAndMidpoints) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const bool is_nan = (bits & 0x7C00) == 0x7C00 && (bits & 0x3FF) != 0;
    if (is_nan) {
      EXPECT_TRUE(std::isnan(HalfToFloat(bits)));
      continue;
    }
    ASSERT_EQ(FloatToHalf(HalfToFloat(bits)), bits) << std::hex << h;
  }
  // Every midpoint between adjacent finite positive halves goes to the even one.
  for (uint32_t h = 0; h < 0x7BFF; ++h) {
    const float lo = HalfToFloat(static_cast<uint16_t>(h));
    const float hi = HalfToFloat(static_cast<uint16_t>(h + 1));
    const float mid = (lo + hi) / 2;  // exact in float
    const uint16_t even = (h % 2 == 0) ? h : h + 1;
    ASSERT_EQ(FloatToHalf(mid), even) << std::hex << h;
    ASSERT_EQ(FloatToHalf(std::nextafter(mid, 0.0f)), h) << std::hex << h;
    ASSERT_EQ(FloatToHalf(std::nextafter(mid, 1e9f)), h + 1) << std::hex << h;
    ASSERT_EQ(FloatToHalf(-mid), even | 0x8000) << std::hex << h;
  }
}

TEST(BFloat16Test, KnownValuesAndRounding) {
  EXPECT_EQ(BFloat16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(0xC020), -2.5f);
  EXPECT_EQ(BFloat16ToFloat(0x477F), 65280.0f);
  EXPECT_EQ(BFloat16ToFloat(0x0001), std::ldexp(1.0f, -133));  // smallest subnormal
  EXPECT_EQ(BFloat16ToFloat(0x7F80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(BFloat16ToFloat(0xFF80), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(0x7FC0)));

  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBFloat16(-2.5f), 0xC020);
  EXPECT_EQ(FloatToBFloat16(65504.0f), 0x4780);  // 65504 rounds up to 65536
  EXPECT_EQ(FloatToBFloat16(std::ldexp(1.0f, -133)), 0x0001);
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(FloatToBFloat16(-std::numeric_limits<float>::infinity()), 0xFF80);
  const uint16_t nan = FloatToBFloat16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7F80, 0x7F80);
  EXPECT_NE(nan & 0x007F, 0);
  // A NaN whose payload lies only in the dropped bits stays NaN.
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(BitsToFloat(0x7F800001)))));
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(BitsToFloat(0xFF800001)))));

  // Ties to even: 1 + 2^-8 lies between 0x3F80 and 0x3F81.
  EXPECT_EQ(FloatToBFloat16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(FloatToBFloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_EQ(FloatToBFloat16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3F81);
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to inf
  EXPECT_EQ(FloatToBFloat16(-0.0f), 0x8000);

  for (uint32_t b = 0; b < 0x10000; ++b) {
    const uint16_t bits = static_cast<uint16_t>(b);
    if ((bits & 0x7F80) == 0x7F80 && (bits & 0x7F) != 0) continue;  // NaN
    ASSERT_EQ(FloatToBFloat16(BFloat16ToFloat(bits)), bits) << std::hex << b;
    ASSERT_EQ(FloatToBits(BFloat16ToFloat(bits)), b << 16);
  }
}

}  // namespace
}  // namespace skillpack
