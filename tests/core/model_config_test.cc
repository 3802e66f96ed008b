#include "core/model_config.h"

#include <gtest/gtest.h>

namespace skillpack {
namespace {

Json Llama() {
  // Shapes of TinyLlama-1.1B's config.json.
  return Json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 32,
    "num_hidden_layers": 22, "num_key_value_heads": 4, "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
    "tie_word_embeddings": false, "vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": "bfloat16"})");
}

TEST(ModelConfigTest, ParsesLlama) {
  auto c = ParseModelConfig(Llama(), "cfg");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->num_kv_groups(), 8);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{2});
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
  // TinyLlama-1.1B: 1,100,048,384 parameters.
  EXPECT_EQ(c->NumParameters(), 1100048384);
}

TEST(ModelConfigTest, ParsesLlama3RopeScalingAndEosList) {
  Json j = Llama();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  j["eos_token_id"] = {128001, 128008, 128009};
  auto c = ParseModelConfig(j, "cfg");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_EQ(c->eos_token_ids.size(), 3u);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(ParseModelConfig(j, "cfg")->rope_scaling.type, RopeScalingType::kLinear);
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}};
  EXPECT_EQ(ParseModelConfig(j, "cfg").status().message(),
            "cfg: rope_scaling: unsupported type 'yarn' (supported: default, linear, llama3)");
}

TEST(ModelConfigTest, Qwen2HasQkvBiasAndMistralSlidingWindow) {
  Json j = Llama();
  j["model_type"] = "qwen2";
  j["tie_word_embeddings"] = true;
  auto q = ParseModelConfig(j, "cfg");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->attention_bias);
  EXPECT_FALSE(q->o_proj_bias);
  EXPECT_TRUE(q->tie_word_embeddings);
  j["model_type"] = "mistral";
  j["sliding_window"] = 4096;
  auto m = ParseModelConfig(j, "cfg");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sliding_window, 4096);
}

TEST(ModelConfigTest, ErrorsNameTheProblem) {
  Json j = Llama();
  j["model_type"] = "gpt2";
  EXPECT_EQ(ParseModelConfig(j, "cfg").status().message(),
            "cfg: unsupported architecture model_type 'gpt2' (supported: llama, mistral, qwen2)");
  j = Llama();
  j["num_key_value_heads"] = 5;
  EXPECT_EQ(ParseModelConfig(j, "cfg").status().message(),
            "cfg: num_attention_heads (32) must be a multiple of num_key_value_heads (5)");
  j = Llama();
  j.erase("hidden_size");
  EXPECT_EQ(ParseModelConfig(j, "cfg").status().message(), "cfg: missing field 'hidden_size'");
  j = Llama();
  j["hidden_act"] = "gelu";
  EXPECT_FALSE(ParseModelConfig(j, "cfg").ok());
  j = Llama();
  j["vocab_size"] = -1;
  EXPECT_EQ(ParseModelConfig(j, "cfg").status().message(), "cfg: vocab_size must be positive, got -1");
}

TEST(ModelConfigTest, JsonRoundTrip) {
  Json j = Llama();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  auto c = *ParseModelConfig(j, "cfg");
  auto back = ParseModelConfig(ModelConfigToJson(c), "out");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->NumParameters(), c.NumParameters());
  EXPECT_EQ(back->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(ModelConfigToJson(c)["architectures"][0], "LlamaForCausalLM");
}

}  // namespace
}  // namespace skillpack
