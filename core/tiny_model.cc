#include "core/tiny_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/file_util.h"
#include "core/tokenizer.h"
#include "core/weights.h"

namespace skillpack {

StatusOr<ModelConfig> TinyModelConfig(const TinyModelOptions& o) {
  ASSIGN_OR_RETURN(
      std::unique_ptr<Tokenizer> tok,
      Tokenizer::FromJson(MakeByteLevelTokenizerJson(), "byte-level tokenizer", MakeByteLevelTokenizerConfigJson()));
  Json j;
  j["model_type"] = "llama";
  j["hidden_size"] = o.hidden;
  j["num_hidden_layers"] = o.layers;
  j["num_attention_heads"] = o.heads;
  j["num_key_value_heads"] = o.kv_heads;
  int64_t inter = o.intermediate;
  if (inter == 0) inter = ((o.hidden * 8 / 3) + 63) / 64 * 64;
  j["intermediate_size"] = inter;
  if (o.vocab != 0 && o.vocab < tok->vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--vocab must be at least the tokenizer's ", tok->vocab_size(), " tokens, got ", o.vocab));
  }
  j["vocab_size"] = o.vocab == 0 ? tok->vocab_size() : o.vocab;
  j["max_position_embeddings"] = o.max_positions;
  j["rms_norm_eps"] = 1e-5;
  j["rope_theta"] = 10000.0;
  j["tie_word_embeddings"] = o.tie_embeddings;
  if (auto bos = tok->bos_id()) j["bos_token_id"] = *bos;
  std::vector<int32_t> eos = tok->eos_ids();
  if (!eos.empty()) j["eos_token_id"] = eos.size() == 1 ? Json(eos[0]) : Json(eos);
  if (o.hidden % o.heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--hidden (", o.hidden, ") must be a multiple of --heads (", o.heads, ")"));
  }
  return ParseModelConfig(j, "tiny model options");
}

Status InitTinyModel(const TinyModelOptions& o, const std::string& dir) {
  ASSIGN_OR_RETURN(ModelConfig c, TinyModelConfig(o));
  RETURN_IF_ERROR(MakeDirectories(dir));
  std::map<std::string, at::Tensor> tensors;
  try {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    for (const TensorSpec& s : ExpectedTensors(c)) {
      absl::string_view name = s.name;
      at::Tensor t;
      if (name.find("norm") != absl::string_view::npos) {
        t = at::ones(s.shape, at::kFloat);
      } else if (name.substr(name.size() - 5) == ".bias") {
        t = at::zeros(s.shape, at::kFloat);
      } else {
        t = at::normal(0.0, 0.02, s.shape, gen, at::TensorOptions().dtype(at::kFloat));
      }
      tensors.emplace(s.name, std::move(t));
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "initialising tiny model");
  }
  ASSIGN_OR_RETURN(auto weights, ModelWeights::Create(c, std::move(tensors)));
  RETURN_IF_ERROR(weights->Save(dir));
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, "config.json"), ModelConfigToJson(c).dump(2)));
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, "tokenizer.json"), MakeByteLevelTokenizerJson()));
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, "tokenizer_config.json"), MakeByteLevelTokenizerConfigJson()));
  Json gen;
  if (!c.bos_token_ids.empty()) gen["bos_token_id"] = c.bos_token_ids[0];
  gen["eos_token_id"] = c.eos_token_ids;
  gen["do_sample"] = false;
  return WriteFileAtomically(JoinPath(dir, "generation_config.json"), gen.dump(2));
}

}  // namespace skillpack
