// .skillpack format tests: the base fingerprint (checked
// against an independent re-implementation of its documented definition),
// lossless write/read round trips, DescribePack, and refusal of malformed
// files and packs that do not fit a base.
#include "pack/format.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/file_util.h"
#include "core/model.h"
#include "core/safetensors.h"
#include "core/tiny_model.h"
#include "pack/decode.h"
#include "pack/fingerprint.h"
#include "tests/pack/pack_test_util.h"

namespace skillpack {
namespace {

// A per-process path under the test temp dir (test binaries may run concurrently).
std::string TempPath(absl::string_view name) {
  return JoinPath(::testing::TempDir(), absl::StrCat("pack_format_test_", getpid(), "_", name));
}

using ::testing::HasSubstr;
using testutil::EveryOpPack;

// ------------------------------------------------------------------ fingerprint

// The fingerprint as fingerprint.h documents it, written independently.
std::string ReferenceFingerprint(const ModelWeights& w) {
  const ModelConfig& c = w.config();
  std::string s = "skillpack-base-fingerprint-v1\n";
  absl::StrAppend(&s, "{\"head_dim\":", c.head_dim, ",\"hidden_size\":", c.hidden_size,
                  ",\"intermediate_size\":", c.intermediate_size, ",\"model_type\":\"", c.model_type,
                  "\",\"num_attention_heads\":", c.num_attention_heads, ",\"num_hidden_layers\":", c.num_hidden_layers,
                  ",\"num_key_value_heads\":", c.num_key_value_heads,
                  ",\"tie_word_embeddings\":", c.tie_word_embeddings ? "true" : "false",
                  ",\"vocab_size\":", c.vocab_size, "}\n");
  for (const auto& [name, t] : w.tensors()) {
    absl::StrAppend(&s, name, "\n", absl::StrJoin(t.sizes(), ","), "\n");
    const at::Tensor flat = t.reshape({-1}).to(at::kFloat).contiguous();
    const int64_t n = flat.numel();
    std::vector<int64_t> idx;
    if (n <= 4096) {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    } else {
      for (int64_t c = 0; c < 64; ++c) {
        const int64_t start = static_cast<int64_t>((static_cast<__int128>(c) * (n - 16)) / 63);
        for (int64_t k = 0; k < 16; ++k) idx.push_back(start + k);
      }
    }
    for (int64_t i : idx) {
      float v = flat.data_ptr<float>()[i];
      char b[4];
      std::memcpy(b, &v, 4);  // the test machine is little-endian
      s.append(b, 4);
    }
  }
  return "sha256:" + Sha256Hex(s);
}

class FingerprintTest : public ::testing::Test {
 protected:
  static std::string Dir(absl::string_view name) { return TempPath(name); }

  static std::shared_ptr<const ModelWeights> Load(const std::string& dir, at::ScalarType dtype) {
    auto config = LoadModelConfig(dir);
    EXPECT_TRUE(config.ok()) << config.status();
    auto w = ModelWeights::Load(*config, dir, at::TensorOptions().dtype(dtype));
    EXPECT_TRUE(w.ok()) << w.status();
    return *w;
  }

  static std::string Fp(const ModelWeights& w) {
    auto fp = BaseFingerprint(w);
    EXPECT_TRUE(fp.ok()) << fp.status();
    return *fp;
  }

  static TinyModelOptions Options(uint64_t seed) {
    TinyModelOptions o;
    o.layers = 1;
    o.hidden = 64;
    o.heads = 4;
    o.kv_heads = 2;
    o.intermediate = 128;  // gate/up/down have 8192 > 4096 entries: sampled
    o.max_positions = 64;
    o.seed = seed;
    return o;
  }
};

TEST_F(FingerprintTest, StableAcrossStorageDtypeAndMatchesDefinition) {
  const std::string src = Dir("fp_src"), a = Dir("fp_f32"), b = Dir("fp_bf16");
  ASSERT_TRUE(InitTinyModel(Options(1), src).ok());
  auto w = Load(src, at::kFloat);
  // Make every value exactly representable in bf16, then store it both ways.
  std::map<std::string, at::Tensor> rounded;
  for (const auto& [n, t] : w->tensors()) rounded[n] = t.to(at::kBFloat16).to(at::kFloat);
  auto wr = w->WithReplaced(rounded);
  ASSERT_TRUE(wr.ok());
  ASSERT_TRUE((*wr)->Save(a, "float32").ok());
  ASSERT_TRUE((*wr)->Save(b, "bfloat16").ok());
  for (const std::string& d : {a, b}) {
    ASSERT_TRUE(WriteFileAtomically(JoinPath(d, "config.json"), ModelConfigToJson(w->config()).dump()).ok());
  }
  const std::string fa = Fp(*Load(a, at::kFloat));
  EXPECT_TRUE(IsValidFingerprint(fa)) << fa;
  EXPECT_EQ(fa, Fp(*Load(b, at::kFloat)));
  EXPECT_EQ(fa, Fp(*Load(b, at::kBFloat16)));
  EXPECT_EQ(fa, ReferenceFingerprint(**wr));
  EXPECT_EQ(Fp(*w), ReferenceFingerprint(*w));
  EXPECT_NE(Fp(*w), fa);  // the bf16 rounding changed values
}

TEST_F(FingerprintTest, ChangesWithSampledWeightsAndSeed) {
  const std::string d1 = Dir("fp_seed1"), d2 = Dir("fp_seed2");
  ASSERT_TRUE(InitTinyModel(Options(1), d1).ok());
  ASSERT_TRUE(InitTinyModel(Options(2), d2).ok());
  auto w1 = Load(d1, at::kFloat);
  const std::string f1 = Fp(*w1);
  EXPECT_NE(f1, Fp(*Load(d2, at::kFloat)));

  const std::string name = LayerTensorName(0, "mlp.up_proj.weight");  // [128, 64]: sampled
  auto changed = [&](int64_t flat_index) {
    at::Tensor t = w1->Find(name)->clone();
    t.view({-1})[flat_index] += 0.5;
    auto w = w1->WithReplaced({{name, t}});
    EXPECT_TRUE(w.ok());
    return Fp(**w);
  };
  EXPECT_NE(changed(0), f1);         // chunk 0
  EXPECT_NE(changed(8192 - 1), f1);  // last chunk ends at numel
  EXPECT_NE(changed(129 + 3), f1);   // chunk 1 starts at floor(8176 / 63) = 129
  EXPECT_EQ(changed(20), f1);        // between chunks 0 and 1: not sampled, by definition
  // A small tensor is hashed whole.
  const std::string norm = LayerTensorName(0, "input_layernorm.weight");
  at::Tensor t = w1->Find(norm)->clone();
  t[37] += 1e-3;
  EXPECT_NE(Fp(**w1->WithReplaced({{norm, t}})), f1);
}

// ------------------------------------------------------------------ round trip

void ExpectSameQuant(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  EXPECT_EQ(a.bits, b.bits);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.cols, b.cols);
  EXPECT_EQ(a.group_size, b.group_size);
  EXPECT_TRUE(at::equal(a.codes, b.codes));
  EXPECT_TRUE(at::equal(a.scales, b.scales));
  EXPECT_TRUE(at::equal(a.zeros, b.zeros));
  ASSERT_EQ(a.perm.defined(), b.perm.defined());
  if (a.perm.defined()) {
    EXPECT_TRUE(at::equal(a.perm, b.perm));
  }
}

void ExpectSamePack(const SkillPack& a, const SkillPack& b) {
  EXPECT_EQ(a.manifest.name, b.manifest.name);
  EXPECT_EQ(a.manifest.version, b.manifest.version);
  EXPECT_EQ(a.manifest.format_version, b.manifest.format_version);
  EXPECT_EQ(a.manifest.base_fingerprint, b.manifest.base_fingerprint);
  EXPECT_EQ(a.manifest.description, b.manifest.description);
  EXPECT_EQ(a.manifest.tags, b.manifest.tags);
  EXPECT_EQ(a.manifest.provenance, b.manifest.provenance);
  EXPECT_EQ(a.manifest.created_at, b.manifest.created_at);
  ASSERT_EQ(a.modules.size(), b.modules.size());
  for (size_t i = 0; i < a.modules.size(); ++i) {
    const ModuleDelta &x = a.modules[i], &y = b.modules[i];
    SCOPED_TRACE(x.name);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.op, y.op);
    EXPECT_EQ(x.shape, y.shape);
    switch (x.op) {
      case ModuleOp::kLowRank:
        EXPECT_TRUE(at::equal(x.sigma, y.sigma));
        ASSERT_EQ(x.bands.size(), y.bands.size());
        for (size_t b = 0; b < x.bands.size(); ++b) {
          EXPECT_EQ(x.bands[b].rank_begin, y.bands[b].rank_begin);
          EXPECT_EQ(x.bands[b].rank_end, y.bands[b].rank_end);
          ExpectSameQuant(x.bands[b].u, y.bands[b].u);
          ExpectSameQuant(x.bands[b].vt, y.bands[b].vt);
        }
        break;
      case ModuleOp::kSparse:
        EXPECT_EQ(y.indices.scalar_type(), at::kLong);
        EXPECT_EQ(y.values.scalar_type(), at::kHalf);
        EXPECT_TRUE(at::equal(x.indices, y.indices));
        EXPECT_TRUE(at::equal(x.values, y.values));
        break;
      case ModuleOp::kDenseQuant:
        ExpectSameQuant(x.dense, y.dense);
        break;
      case ModuleOp::kDense:
        EXPECT_TRUE(at::equal(x.full, y.full));
        break;
    }
    auto dx = DecodeModuleDelta(x);
    auto dy = DecodeModuleDelta(y);
    ASSERT_TRUE(dx.ok() && dy.ok());
    EXPECT_TRUE(at::equal(*dx, *dy));
  }
}

TEST(PackFormatTest, RoundTripEveryOpAndWidthInMemoryAndOnDisk) {
  const SkillPack p = EveryOpPack(5);
  ASSERT_TRUE(ValidateSkillPack(p).ok()) << ValidateSkillPack(p);
  auto bytes = SerializeSkillPack(p);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto q = ParseSkillPack(*bytes, "mem");
  ASSERT_TRUE(q.ok()) << q.status();
  ExpectSamePack(p, *q);

  const std::string path = TempPath("rt.skillpack");
  ASSERT_TRUE(WriteSkillPack(p, path).ok());
  auto r = ReadSkillPack(path);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectSamePack(p, *r);
  // Deterministic: the same pack serialises to the same bytes.
  EXPECT_EQ(*SerializeSkillPack(*r), *bytes);

  // The container holds what the spec says.
  auto file = SafetensorsFile::FromBuffer(*bytes, "mem");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->metadata().at("format"), "skillpack");
  EXPECT_EQ((*file)->metadata().at("format_version"), "1");
  const std::string m = "model.layers.0.mlp.down_proj.weight::";
  const TensorView* codes = (*file)->Find(m + "band3.vt.codes");  // 1 x 48 at 2 bits
  ASSERT_NE(codes, nullptr);
  EXPECT_EQ(codes->dtype, DType::kU8);
  EXPECT_EQ(codes->shape, std::vector<int64_t>{12});
  EXPECT_EQ((*file)->Find(m + "band3.vt.perm")->dtype, DType::kI32);
  EXPECT_EQ((*file)->Find(m + "band0.vt.perm"), nullptr);
  EXPECT_EQ((*file)->Find(m + "band0.u.scales")->dtype, DType::kF32);  // RTN scales are not fp16-exact
  EXPECT_EQ((*file)->Find(m + "sigma")->dtype, DType::kF32);
  EXPECT_EQ((*file)->Find("model.embed_tokens.weight::indices")->dtype, DType::kI32);
  EXPECT_EQ((*file)->Find("model.embed_tokens.weight::values")->dtype, DType::kF16);
  EXPECT_EQ((*file)->Find("model.layers.0.input_layernorm.weight::full")->shape, std::vector<int64_t>{32});
  for (const ModuleDelta& mod : p.modules) {
    int64_t sum = 0;
    for (const TensorView& v : (*file)->tensors()) {
      if (v.name.rfind(mod.name + "::", 0) == 0) sum += v.nbytes;
    }
    EXPECT_EQ(sum, ModuleStoredBytes(mod)) << mod.name;
  }
}

TEST(PackFormatTest, HalfScalesAreStoredAsF16AndStillLossless) {
  SkillPack p = EveryOpPack(6);
  const int64_t before = DescribePack(p)["stored_bytes"].get<int64_t>();
  ASSERT_TRUE(RoundScalesToHalf(&p).ok());
  const int64_t after = DescribePack(p)["stored_bytes"].get<int64_t>();
  EXPECT_LT(after, before);
  auto bytes = SerializeSkillPack(p);
  ASSERT_TRUE(bytes.ok());
  auto file = SafetensorsFile::FromBuffer(*bytes, "mem");
  ASSERT_TRUE(file.ok());
  const std::string m = "model.layers.0.mlp.down_proj.weight::";
  EXPECT_EQ((*file)->Find(m + "band1.u.scales")->dtype, DType::kF16);  // 4 bits
  EXPECT_EQ((*file)->Find(m + "band0.u.scales")->dtype, DType::kF32);  // 8 bits: left alone
  auto q = ParseSkillPack(*bytes, "mem");
  ASSERT_TRUE(q.ok()) << q.status();
  ExpectSamePack(p, *q);
}

TEST(PackFormatTest, EmptyPackAndZeroRankModuleRoundTrip) {
  SkillPack p = EveryOpPack(1);
  p.modules.clear();
  auto q = ParseSkillPack(*SerializeSkillPack(p), "empty");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_TRUE(q->modules.empty());

  ModuleDelta z;
  z.name = "model.layers.0.mlp.up_proj.weight";
  z.op = ModuleOp::kLowRank;
  z.shape = {48, 32};
  z.sigma = at::empty({0}, at::kFloat);
  p.modules.push_back(z);
  auto r = ParseSkillPack(*SerializeSkillPack(p), "zero-rank");
  ASSERT_TRUE(r.ok()) << r.status();
  auto d = DecodeModuleDelta(r->modules[0]);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(at::equal(*d, at::zeros({48, 32})));
}

TEST(PackFormatTest, DescribePack) {
  const SkillPack p = EveryOpPack(3);
  const Json d = DescribePack(p);
  EXPECT_EQ(d["name"], "every-op.pack_1");
  EXPECT_EQ(d["format_version"], 1);
  EXPECT_EQ(d["tags"], Json({"math", "test"}));
  EXPECT_EQ(d["num_modules"], 6);
  const Json& down = d["modules"][2];
  EXPECT_EQ(down["op"], "lowrank");
  EXPECT_EQ(down["rank"], 7);
  ASSERT_EQ(down["bands"].size(), 4u);
  EXPECT_EQ(down["bands"][0]["bits"], 8);
  EXPECT_EQ(down["bands"][3]["bits"], 2);
  EXPECT_EQ(down["bands"][3]["width"], 1);
  EXPECT_EQ(down["bands"][1]["vt"]["act_order"], true);
  EXPECT_EQ(d["modules"][0]["op"], "sparse");
  EXPECT_DOUBLE_EQ(d["modules"][0]["density"].get<double>(), 150.0 / (97 * 32));
  int64_t fp16 = 0, stored = 0;
  for (const ModuleDelta& m : p.modules) {
    int64_t n = 1;
    for (int64_t s : m.shape) n *= s;
    fp16 += 2 * n;
    stored += ModuleStoredBytes(m);
  }
  EXPECT_EQ(d["fp16_delta_bytes"], fp16);
  EXPECT_EQ(d["stored_bytes"], stored);
  EXPECT_DOUBLE_EQ(d["compression_ratio"].get<double>(), static_cast<double>(fp16) / stored);
  // Serialized size = data + header; data is exactly the stored bytes.
  EXPECT_GT(static_cast<int64_t>(SerializeSkillPack(p)->size()), stored);
}

// The worked example of docs/skillpack-format.md, byte for byte.
TEST(PackFormatTest, SpecWorkedExample) {
  SkillPack p;
  p.manifest.name = "tiny-example";
  p.manifest.base_fingerprint = testutil::FakeFingerprint('0');
  ModuleDelta m;
  m.name = "model.layers.0.mlp.up_proj.weight";
  m.op = ModuleOp::kLowRank;
  m.shape = {2, 3};
  m.sigma = at::tensor({2.0f});
  LowRankBand b;
  b.rank_begin = 0;
  b.rank_end = 1;
  b.u.bits = 4;
  b.u.rows = 2;
  b.u.cols = 1;
  b.u.group_size = 128;
  b.u.codes = at::tensor({12, 4}, at::kByte).view({2, 1});
  b.u.zeros = at::tensor({8, 8}, at::kByte).view({2, 1});
  b.u.scales = at::tensor({0.125f, 0.25f}).view({2, 1});
  b.vt.bits = 4;
  b.vt.rows = 1;
  b.vt.cols = 3;
  b.vt.group_size = 2;
  b.vt.codes = at::tensor({3, 0, 5}, at::kByte).view({1, 3});
  b.vt.zeros = at::tensor({1, 2}, at::kByte).view({1, 2});
  b.vt.scales = at::tensor({0.5f, 0.25f}).view({1, 2});
  b.vt.perm = at::tensor({2, 0, 1}, at::kLong);
  m.bands.push_back(b);
  p.modules.push_back(m);

  auto bytes = SerializeSkillPack(p);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = SafetensorsFile::FromBuffer(*bytes, "example");
  ASSERT_TRUE(file.ok());
  auto raw = [&](const std::string& field) {
    const TensorView* v = (*file)->Find(m.name + "::" + field);
    EXPECT_NE(v, nullptr) << field;
    return v == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(v->data), v->nbytes);
  };
  EXPECT_EQ(raw("sigma"), std::string("\x00\x00\x00\x40", 4));
  EXPECT_EQ(raw("band0.u.codes"), "\x4C");
  EXPECT_EQ(raw("band0.u.zeros"), "\x88");
  EXPECT_EQ(raw("band0.u.scales"), std::string("\x00\x30\x00\x34", 4));  // F16 0.125, 0.25
  EXPECT_EQ(raw("band0.vt.codes"), std::string("\x03\x05", 2));
  EXPECT_EQ(raw("band0.vt.zeros"), "\x21");
  EXPECT_EQ(raw("band0.vt.scales"), std::string("\x00\x38\x00\x34", 4));  // F16 0.5, 0.25
  EXPECT_EQ(raw("band0.vt.perm"), std::string("\x02\0\0\0\0\0\0\0\x01\0\0\0", 12));
  EXPECT_EQ((*file)->tensors().size(), 8u);
  const Json manifest = Json::parse((*file)->metadata().at("manifest"));
  EXPECT_EQ(manifest["modules"][0]["bytes"], 29);
  EXPECT_EQ(manifest["modules"][0]["bands"][0]["vt"], Json({{"bits", 4}, {"group_size", 2}, {"act_order", true}}));
  auto q = ParseSkillPack(*bytes, "example");
  ASSERT_TRUE(q.ok()) << q.status();
  auto d = DecodeModuleDelta(q->modules[0]);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(at::equal(*d, at::tensor({-0.5f, 0.75f, 1.0f, 1.0f, -1.5f, -2.0f}).view({2, 3})));
}

// ------------------------------------------------------------------ malformed files

// A .skillpack file taken apart for surgery.
struct RawFile {
  struct Tensor {
    DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;

  explicit RawFile(const std::string& file) {
    auto f = SafetensorsFile::FromBuffer(file, "raw");
    EXPECT_TRUE(f.ok()) << f.status();
    metadata = (*f)->metadata();
    for (const TensorView& v : (*f)->tensors()) {
      tensors[v.name] = {v.dtype, v.shape, std::string(reinterpret_cast<const char*>(v.data), v.nbytes)};
    }
  }
  Json manifest() const { return Json::parse(metadata.at("manifest")); }
  void set_manifest(const Json& j) { metadata["manifest"] = j.dump(); }
  std::string Serialize() const {
    SafetensorsWriter w;
    for (const auto& [k, v] : metadata) w.SetMetadata(k, v);
    for (const auto& [n, t] : tensors) EXPECT_TRUE(w.Add(n, t.dtype, t.shape, t.bytes.data(), t.bytes.size()).ok());
    return w.Serialize();
  }
};

constexpr char kDown[] = "model.layers.0.mlp.down_proj.weight";
constexpr char kEmbed[] = "model.embed_tokens.weight";
constexpr char kQ[] = "model.layers.0.self_attn.q_proj.weight";

class MalformedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = SerializeSkillPack(EveryOpPack(9));
    ASSERT_TRUE(b.ok()) << b.status();
    good_ = *b;
  }

  // Applies `edit` to the parsed-apart good file and expects ParseSkillPack to
  // refuse the result with INVALID_ARGUMENT and a message holding each of `want`.
  void ExpectRefused(const std::function<void(RawFile&)>& edit, std::vector<std::string> want) {
    RawFile raw(good_);
    edit(raw);
    auto p = ParseSkillPack(raw.Serialize(), "bad.skillpack");
    ASSERT_FALSE(p.ok()) << "accepted a malformed pack; expected: " << absl::StrJoin(want, " / ");
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("bad.skillpack")) << p.status();
    for (const std::string& w : want) {
      EXPECT_THAT(std::string(p.status().message()), HasSubstr(w)) << p.status();
    }
  }

  static Json& Module(Json& manifest, const std::string& name) {
    for (Json& m : manifest["modules"]) {
      if (m["name"] == name) return m;
    }
    ADD_FAILURE() << "no module " << name;
    return manifest;
  }

  // Edits tensor `name` as a typed array.
  template <typename T>
  static void EditTensor(RawFile& raw, const std::string& name, const std::function<void(T*, size_t)>& f) {
    std::string& b = raw.tensors.at(name).bytes;
    std::vector<T> v(b.size() / sizeof(T));
    std::memcpy(v.data(), b.data(), b.size());
    f(v.data(), v.size());
    std::memcpy(b.data(), v.data(), b.size());
  }

  std::string good_;
};

TEST_F(MalformedTest, EveryTruncationIsRefused) {
  ASSERT_LT(good_.size(), 20000u);
  for (size_t n = 0; n < good_.size(); ++n) {
    auto p = ParseSkillPack(good_.substr(0, n), "cut");
    ASSERT_FALSE(p.ok()) << "accepted a file cut to " << n << " of " << good_.size() << " bytes";
  }
  EXPECT_TRUE(ParseSkillPack(good_, "whole").ok());
}

TEST_F(MalformedTest, ContainerAndMetadata) {
  ExpectRefused([](RawFile& r) { r.metadata.erase("format"); }, {"not a skillpack file"});
  ExpectRefused([](RawFile& r) { r.metadata["format"] = "pt"; }, {"not a skillpack file", "'pt'"});
  ExpectRefused([](RawFile& r) { r.metadata["format_version"] = "x1"; }, {"format_version", "x1"});
  ExpectRefused([](RawFile& r) { r.metadata["format_version"] = "0"; }, {"format_version"});
  for (const char* v : {" 1", "1 ", "+1", "01", "1.0", "", "99999999999999999999"}) {
    SCOPED_TRACE(v);
    ExpectRefused([&](RawFile& r) { r.metadata["format_version"] = v; },
                  {"'format_version' must be a positive integer"});
  }
  ExpectRefused([](RawFile& r) { r.metadata["format_version"] = "2"; },
                {"made by a newer skillpack (format_version 2 > 1)"});
  ExpectRefused([](RawFile& r) { r.metadata.erase("manifest"); }, {"manifest", "missing"});
  ExpectRefused([](RawFile& r) { r.metadata["manifest"] = "{\"name\": "; }, {"manifest", "not valid JSON"});
  ExpectRefused([](RawFile& r) { r.metadata["manifest"] = "[1, 2]"; }, {"manifest", "object"});
  // Deep JSON is refused before it is parsed (nlohmann::json dumps and copies
  // recursively: a manifest nested 100k deep once crashed every GetPack).
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        const int depth = 100000;
        std::string text = j.dump();
        text.pop_back();  // drop the final '}', add "provenance": [[[...]]]
        text += ",\"provenance\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
        r.metadata["manifest"] = text;
      },
      {"manifest", "nested deeper than 64 levels"});
  EXPECT_EQ(ReadSkillPack("/nonexistent/x.skillpack").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(MalformedTest, ManifestFields) {
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        j.erase("name");
        r.set_manifest(j);
      },
      {"field 'name'"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        j["name"] = "Bad Name";
        r.set_manifest(j);
      },
      {"invalid pack name"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        j["base_fingerprint"] = "md5:1";
        r.set_manifest(j);
      },
      {"base_fingerprint"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        j["tags"] = {1};
        r.set_manifest(j);
      },
      {"tags"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        j["provenance"] = "x";
        r.set_manifest(j);
      },
      {"provenance"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        j.erase("modules");
        r.set_manifest(j);
      },
      {"modules"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        std::swap(j["modules"][0], j["modules"][1]);
        r.set_manifest(j);
      },
      {"sorted"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        j["modules"].push_back(j["modules"][0]);
        r.set_manifest(j);
      },
      {kEmbed});
}

TEST_F(MalformedTest, ModuleFields) {
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["op"] = "svd";
        r.set_manifest(j);
      },
      {kDown, "unknown module op 'svd'"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["shape"] = {48, 32};
        r.set_manifest(j);
      },
      {kDown, "shape"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["shape"] = {32, 0};
        r.set_manifest(j);
      },
      {kDown, "dimension <= 0"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["shape"] = {1536};
        r.set_manifest(j);
      },
      {kDown, "2-D"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["rank"] = 33;
        r.set_manifest(j);
      },
      {kDown, "rank 33"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["bands"][1]["u"]["bits"] = 5;
        r.set_manifest(j);
      },
      {kDown, "band 1 u", "bits 5"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["bands"][2]["vt"]["group_size"] = 0;
        r.set_manifest(j);
      },
      {kDown, "band 2 vt", "group_size 0"});
  // Past the row length and the 4096 floor: refused before anything is
  // allocated (2^20 once took 1.2 GB to decode a 223 KB pack).
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["bands"][0]["u"]["group_size"] = int64_t{1} << 20;
        r.set_manifest(j);
      },
      {kDown, "band 0 u", "group_size 1048576 out of range (1..4096"});
  ExpectRefused(  // gap: band 1 starts at 3, band 0 ended at 2
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["bands"][1]["rank_begin"] = 3;
        r.set_manifest(j);
      },
      {kDown, "band 1", "contiguous"});
  ExpectRefused(  // bands stop short of the rank
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["bands"].erase(3);
        r.set_manifest(j);
      },
      {kDown, "bands cover [0, 6) but rank is 7"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kDown)["bytes"] = 1;
        r.set_manifest(j);
      },
      {kDown, "bytes"});
  ExpectRefused(
      [](RawFile& r) {
        Json j = r.manifest();
        Module(j, kEmbed)["density"] = 0.5;
        r.set_manifest(j);
      },
      {kEmbed, "density"});
  ExpectRefused(  // act_order off, bytes fixed up: the stored perm is then one tensor too many
      [](RawFile& r) {
        Json j = r.manifest();
        Json& q = Module(j, kQ);
        q["quant"]["act_order"] = false;
        q["bytes"] = q["bytes"].get<int64_t>() - 32 * 4;
        r.set_manifest(j);
      },
      {"unexpected tensor", "q_proj.weight::dense.perm"});
}

TEST_F(MalformedTest, Tensors) {
  const std::string down = std::string(kDown) + "::";
  ExpectRefused([&](RawFile& r) { r.tensors.erase(down + "band2.vt.zeros"); },
                {kDown, "missing tensor", "band2.vt.zeros"});
  ExpectRefused(
      [&](RawFile& r) {
        r.tensors["model.norm.weight::full"] = {DType::kF32, {1}, std::string(4, '\0')};
      },
      {"unexpected tensor 'model.norm.weight::full'"});
  ExpectRefused([&](RawFile& r) { r.tensors.at(down + "sigma").dtype = DType::kI32; }, {kDown, "sigma", "dtype I32"});
  ExpectRefused(
      [&](RawFile& r) {
        auto& t = r.tensors.at(down + "band0.u.codes");
        t.bytes += "x";
        t.shape[0] += 1;
      },
      {kDown, "band0.u.codes", "shape"});
  ExpectRefused(
      [&](RawFile& r) {
        auto& t = r.tensors.at(down + "band1.u.scales");
        t.shape = {t.shape[1], t.shape[0]};
      },
      {kDown, "band1.u.scales", "shape"});
  ExpectRefused(
      [&](RawFile& r) {
        std::string& b = r.tensors.at(down + "band2.vt.scales").bytes;
        std::fill(b.begin(), b.begin() + 4, '\0');  // zeroes the first scale (F16 or F32)
      },
      {kDown, "band 2 vt", "scales must be finite and positive"});
  ExpectRefused(
      [&](RawFile& r) { EditTensor<int32_t>(r, down + "band1.vt.perm", [](int32_t* p, size_t) { p[1] = p[0]; }); },
      {kDown, "band 1 vt", "perm is not a permutation"});
  ExpectRefused([&](RawFile& r) { EditTensor<float>(r, down + "sigma", [](float* p, size_t) { p[0] = NAN; }); },
                {kDown, "sigma", "non-finite"});
  const std::string embed = std::string(kEmbed) + "::";
  ExpectRefused(
      [&](RawFile& r) { EditTensor<int32_t>(r, embed + "indices", [](int32_t* p, size_t n) { p[n - 1] = 97 * 32; }); },
      {kEmbed, "indices out of range"});
  ExpectRefused([&](RawFile& r) { EditTensor<int32_t>(r, embed + "indices", [](int32_t* p, size_t) { p[0] = -1; }); },
                {kEmbed, "indices out of range"});
  ExpectRefused(
      [&](RawFile& r) { EditTensor<int32_t>(r, embed + "indices", [](int32_t* p, size_t) { std::swap(p[3], p[4]); }); },
      {kEmbed, "strictly increasing"});
  ExpectRefused([&](RawFile& r) { EditTensor<int32_t>(r, embed + "indices", [](int32_t* p, size_t) { p[4] = p[3]; }); },
                {kEmbed, "strictly increasing"});
  ExpectRefused(
      [&](RawFile& r) { EditTensor<uint16_t>(r, embed + "values", [](uint16_t* p, size_t) { p[2] = 0x7C00; }); },
      {kEmbed, "non-finite"});
  ExpectRefused([&](RawFile& r) { r.tensors.at(embed + "values").dtype = DType::kBF16; },
                {kEmbed, "values", "dtype BF16"});
}

TEST_F(MalformedTest, NonzeroPaddingBitsInCodes) {
  // down_proj band 3 u: [32, 1] at 2 bits = 64 bits, no padding; its zeros
  // [32, 1] likewise. The 8-bit o_proj has none either. So build a pack whose
  // band has an odd code count: a [3, 1] u at 3 bits = 9 bits -> 2 bytes.
  at::Generator gen = at::detail::createCPUGenerator(4);
  SkillPack p = EveryOpPack(2);
  p.modules = {testutil::LowRankModule("model.layers.0.mlp.down_proj.weight", 3, 5, {{1, 3, false}}, 4, gen)};
  auto bytes = SerializeSkillPack(p);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  RawFile raw(*bytes);
  std::string& codes = raw.tensors.at(std::string(kDown) + "::band0.u.codes").bytes;
  ASSERT_EQ(codes.size(), 2u);
  codes[1] = static_cast<char>(codes[1] | 0x80);
  auto q = ParseSkillPack(raw.Serialize(), "pad");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(std::string(q.status().message()), HasSubstr("nonzero padding bits"));
}

// ------------------------------------------------------------------ writer-side validation

TEST(PackWriteTest, InvalidInMemoryPacksAreRefused) {
  auto refused = [](const SkillPack& p, const std::string& want) {
    auto b = SerializeSkillPack(p);
    ASSERT_FALSE(b.ok()) << "serialized an invalid pack; expected: " << want;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(b.status().message()), HasSubstr(want)) << b.status();
    EXPECT_FALSE(WriteSkillPack(p, TempPath("never.skillpack")).ok());
  };
  const SkillPack good = EveryOpPack(8);
  {
    SkillPack p = good;
    p.modules[2].bands[1].u.codes = p.modules[2].bands[1].u.codes.clone();
    p.modules[2].bands[1].u.codes[0][0] = 16;  // 4-bit band
    refused(p, "a code exceeds 15");
  }
  {
    SkillPack p = good;
    p.modules[3].dense.bits = 6;
    refused(p, "bits 6");
  }
  {
    SkillPack p = good;
    p.modules[2].bands[2].rank_begin = 5;
    refused(p, "contiguous");
  }
  {
    SkillPack p = good;
    std::swap(p.modules[0], p.modules[1]);
    refused(p, "sorted");
  }
  {
    SkillPack p = good;
    p.manifest.name = "-x";
    refused(p, "invalid pack name");
  }
  {
    SkillPack p = good;
    p.manifest.base_fingerprint = "sha256:ABC";
    refused(p, "base_fingerprint");
  }
  {
    SkillPack p = good;
    p.modules[0].values = p.modules[0].values.to(at::kFloat);
    refused(p, "values must be float16");
  }
  {
    SkillPack p = good;
    p.modules[1].full = at::zeros({31});
    refused(p, "full must be float32 [32]");
  }
  {
    SkillPack p = good;
    p.modules[2].bands[0].vt.perm = at::zeros({48}, at::kLong);
    refused(p, "perm is not a permutation");
  }
  {
    SkillPack p = good;
    p.manifest.format_version = 2;
    refused(p, "format_version");
  }
}

// ------------------------------------------------------------------ against a base

TEST(PackFitsBaseTest, FingerprintAndModules) {
  const ModelConfig c = testutil::SmallConfig();
  auto base = testutil::RandomBase(c, 1);
  auto fp = BaseFingerprint(*base);
  ASSERT_TRUE(fp.ok());
  SkillPack p = EveryOpPack(1, *fp);
  EXPECT_TRUE(CheckPackFitsBase(p, *base, *fp).ok()) << CheckPackFitsBase(p, *base, *fp);

  auto other = testutil::RandomBase(c, 2);
  const std::string other_fp = *BaseFingerprint(*other);
  Status s = CheckPackFitsBase(p, *other, other_fp);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("pack every-op.pack_1 was made for base ", *fp, " but this base is ", other_fp)));

  SkillPack missing = p;
  missing.modules.back().name = "model.layers.7.self_attn.o_proj.weight";
  s = CheckPackFitsBase(missing, *base, *fp);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'model.layers.7.self_attn.o_proj.weight' is not a tensor"));

  SkillPack wrong_shape = p;
  wrong_shape.modules[1].name = "model.norm.weight";  // [32]: fits; make it [16]
  wrong_shape.modules[1].shape = {16};
  wrong_shape.modules[1].full = at::zeros({16});
  s = CheckPackFitsBase(wrong_shape, *base, *fp);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.norm.weight' has shape [16]"));

  // lm_head on a tied base is refused.
  auto tied = testutil::RandomBase(testutil::SmallConfig(/*tie=*/true), 1);
  const std::string tied_fp = *BaseFingerprint(*tied);
  SkillPack head = p;
  head.manifest.base_fingerprint = tied_fp;
  at::Generator gen = at::detail::createCPUGenerator(1);
  head.modules = {testutil::DenseModule("lm_head.weight", {97, 32}, gen)};
  s = CheckPackFitsBase(head, *tied, tied_fp);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ties lm_head"));
}

}  // namespace
}  // namespace skillpack
