// LoRA adapter files (PEFT layout): what is written, that it reads back
// exactly, that training continues from it, and that bad adapters are refused
// with an error naming the file and what is wrong.
#include "trainer/lora_adapter.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/file_util.h"
#include "core/json_util.h"
#include "core/model.h"
#include "core/safetensors.h"
#include "core/tiny_model.h"

namespace skillpack {
namespace {

constexpr char kFingerprint[] = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

class LoraAdapterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    model_dir_ = new std::string(::testing::TempDir() + "/lora_adapter_test_tiny");
    TinyModelOptions o;
    o.layers = 2, o.hidden = 32, o.heads = 2, o.kv_heads = 1, o.intermediate = 48, o.seed = 5;
    ASSERT_TRUE(InitTinyModel(o, *model_dir_).ok());
  }
  void SetUp() override {
    model_ = *LoadModel(*model_dir_, at::kFloat);
    dir_ =
        ::testing::TempDir() + "/lora_adapter_test_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A rank-3 adapter whose B is not zero (as after training), written to dir_.
  std::unique_ptr<TrainableWeights> WrittenAdapter() {
    LoraConfig lora;
    lora.rank = 3;
    lora.alpha = 6;
    auto tw = *TrainableWeights::Create(model_->weights, lora, 9);
    at::NoGradGuard no_grad;
    int i = 0;
    for (const auto& [name, p] : tw->parameters()) p.add_(at::full_like(p, 0.01 * ++i));
    EXPECT_TRUE(WriteLoraAdapter(*tw, kFingerprint, dir_).ok());
    return tw;
  }
  void EditConfig(const std::function<void(Json&)>& edit) {
    const std::string path = JoinPath(dir_, kLoraAdapterConfigFile);
    Json j = *ReadJsonFile(path);
    edit(j);
    ASSERT_TRUE(WriteFileAtomically(path, j.dump()).ok());
  }
  // Rewrites the weights file with the tensors `edit` leaves.
  void EditTensors(const std::function<void(std::map<std::string, at::Tensor>&)>& edit) {
    const std::string path = JoinPath(dir_, kLoraAdapterWeightsFile);
    std::map<std::string, at::Tensor> tensors;
    {
      auto f = *SafetensorsFile::Open(path);
      for (const TensorView& v : f->tensors()) {
        tensors[v.name] = at::from_blob(const_cast<uint8_t*>(v.data), v.shape, at::kFloat).clone();
      }
    }
    edit(tensors);
    SafetensorsWriter w;
    for (const auto& [name, t] : tensors) {
      at::Tensor c = t.contiguous();
      ASSERT_TRUE(w.Add(name, DType::kF32, c.sizes().vec(), c.data_ptr(), c.nbytes()).ok());
    }
    ASSERT_TRUE(w.Write(path).ok());
  }
  void ExpectInvalid(const std::string& want) {
    auto a = ReadLoraAdapter(dir_);
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << a.status();
    EXPECT_NE(a.status().message().find(want), std::string::npos) << "want '" << want << "' in: " << a.status();
  }

  static std::string* model_dir_;
  std::unique_ptr<LoadedModel> model_;
  std::string dir_;
};
std::string* LoraAdapterTest::model_dir_ = nullptr;

TEST_F(LoraAdapterTest, WritesPeftLayout) {
  WrittenAdapter();
  Json c = *ReadJsonFile(JoinPath(dir_, kLoraAdapterConfigFile));
  EXPECT_EQ(c["peft_type"], "LORA");
  EXPECT_EQ(c["task_type"], "CAUSAL_LM");
  EXPECT_EQ(c["r"], 3);
  EXPECT_EQ(c["lora_alpha"], 6.0);
  EXPECT_EQ(c["bias"], "none");
  EXPECT_EQ(c["target_modules"],
            Json::parse(R"(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"])"));
  auto f = *SafetensorsFile::Open(JoinPath(dir_, kLoraAdapterWeightsFile));
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at(kLoraAdapterFingerprintKey), kFingerprint);
  EXPECT_EQ(f->tensors().size(), 2u * 2 * 7);  // A and B, 7 projections, 2 layers
  // PEFT's names and shapes: q_proj is [32 out, 32 in], down_proj [32 out, 48 in].
  const TensorView* qa = f->Find("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  const TensorView* db = f->Find("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
  const TensorView* da = f->Find("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
  ASSERT_TRUE(qa != nullptr && db != nullptr && da != nullptr);
  EXPECT_EQ(qa->dtype, DType::kF32);
  EXPECT_EQ(qa->shape, (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(da->shape, (std::vector<int64_t>{3, 48}));
  EXPECT_EQ(db->shape, (std::vector<int64_t>{32, 3}));
}

TEST_F(LoraAdapterTest, ReadsBackExactlyAndContinuesTheSameWeights) {
  auto tw = WrittenAdapter();
  auto a = ReadLoraAdapter(dir_);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->config.rank, 3);
  EXPECT_EQ(a->config.alpha, 6.0);
  EXPECT_EQ(a->base_fingerprint, kFingerprint);
  ASSERT_EQ(a->tensors.size(), tw->parameters().size());
  for (const auto& [name, p] : tw->parameters()) {
    ASSERT_TRUE(a->tensors.count(name)) << name;
    EXPECT_TRUE(at::equal(a->tensors.at(name), p.detach())) << name;
  }
  // Weights made from the file start where the written ones are (another
  // seed: nothing random is left), and merge to the same model.
  auto again = TrainableWeights::Create(model_->weights, a->config, 1234, &a->tensors);
  ASSERT_TRUE(again.ok()) << again.status();
  for (size_t i = 0; i < tw->parameters().size(); ++i) {
    EXPECT_EQ((*again)->parameters()[i].first, tw->parameters()[i].first);
    EXPECT_TRUE(at::equal((*again)->parameters()[i].second, tw->parameters()[i].second));
    EXPECT_TRUE((*again)->parameters()[i].second.requires_grad());
  }
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  EXPECT_TRUE(at::equal(*(*(*again)->Merged())->Find(q), *(*tw->Merged())->Find(q)));
  EXPECT_FALSE(at::equal(*(*(*again)->Merged())->Find(q), *model_->weights->Find(q)));
}

TEST_F(LoraAdapterTest, CreateNamesTheTensorThatDoesNotFitTheModel) {
  WrittenAdapter();
  const LoraAdapter a = *ReadLoraAdapter(dir_);
  const std::string qa = "model.layers.1.self_attn.q_proj.weight.lora_A";
  auto expect = [&](const std::map<std::string, at::Tensor>& init, const std::string& want) {
    auto tw = TrainableWeights::Create(model_->weights, a.config, 1, &init);
    ASSERT_FALSE(tw.ok());
    EXPECT_EQ(tw.status().code(), absl::StatusCode::kInvalidArgument) << tw.status();
    EXPECT_NE(tw.status().message().find(want), std::string::npos) << "want '" << want << "' in: " << tw.status();
  };
  auto missing = a.tensors;
  missing.erase(qa);
  expect(missing, "the adapter has no " + qa);
  auto wrong = a.tensors;
  wrong[qa] = at::zeros({3, 31});
  expect(wrong, "is [3, 31], this model needs [3, 32]");
  auto full = TrainableWeights::Create(model_->weights, LoraConfig{}, 1, &a.tensors);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kInvalidArgument) << full.status();
  auto extra = a.tensors;
  extra["model.layers.2.self_attn.q_proj.weight.lora_A"] = at::zeros({3, 32});
  expect(extra, "model.layers.2.self_attn.q_proj.weight.lora_A adapts no projection of this model");
}

TEST_F(LoraAdapterTest, RefusesWhatItCannotContinueExactly) {
  EXPECT_EQ(ReadLoraAdapter(dir_).status().code(), absl::StatusCode::kNotFound);

  WrittenAdapter();
  EditConfig([](Json& j) { j["peft_type"] = "IA3"; });
  ExpectInvalid("peft_type must be \"LORA\"");
  WrittenAdapter();
  EditConfig([](Json& j) { j.erase("r"); });
  ExpectInvalid("r must be an integer");
  WrittenAdapter();
  EditConfig([](Json& j) { j["lora_alpha"] = 0; });
  ExpectInvalid("lora_alpha must be a number > 0");
  WrittenAdapter();
  EditConfig([](Json& j) { j["target_modules"] = {"q_proj", "v_proj"}; });
  ExpectInvalid("target_modules must be the seven projections");
  WrittenAdapter();
  EditConfig([](Json& j) { j["use_rslora"] = true; });
  ExpectInvalid("use_rslora is set");
  WrittenAdapter();
  EditConfig([](Json& j) { j["use_dora"] = true; });
  ExpectInvalid("use_dora is set");
  WrittenAdapter();
  EditConfig([](Json& j) { j["bias"] = "all"; });
  ExpectInvalid("bias is not \"none\"");
  WrittenAdapter();
  EditConfig([](Json& j) { j["rank_pattern"] = {{"q_proj", 8}}; });
  ExpectInvalid("rank_pattern is not empty");
  WrittenAdapter();
  EditConfig([](Json& j) { j["layers_to_transform"] = {0}; });
  ExpectInvalid("layers_to_transform is set");

  const std::string qb = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
  WrittenAdapter();
  EditTensors([&](auto& t) { t["base_model.model.lm_head.weight"] = at::zeros({2, 2}); });
  ExpectInvalid("tensor base_model.model.lm_head.weight is not a LoRA matrix");
  WrittenAdapter();
  EditTensors([&](auto& t) { t[qb] = at::zeros({32, 4}); });
  ExpectInvalid("tensor " + qb + " is [32, 4], its rank side must be r = 3");
  WrittenAdapter();
  EditTensors([&](auto& t) { t[qb] = at::zeros({32}); });
  ExpectInvalid("tensor " + qb + " must be a 2-D float matrix");
  WrittenAdapter();
  EditTensors([&](auto& t) { t.erase(qb); });
  ExpectInvalid("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has no " + qb);
}

}  // namespace
}  // namespace skillpack
