#include "core/model_config.h"

#include "core/file_util.h"

namespace skillpack {
namespace {

Status Positive(int64_t v, absl::string_view field, absl::string_view what) {
  if (v <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", field, " must be positive, got ", v));
  }
  return absl::OkStatus();
}

// bos_token_id / eos_token_id may be an integer, a list of integers, or null.
StatusOr<std::vector<int64_t>> TokenIdList(const Json& j, const char* key, absl::string_view what) {
  std::vector<int64_t> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": field '", key, "' must be an integer or a list of integers"));
  };
  if (it->is_number_integer()) {
    out.push_back(it->get<int64_t>());
  } else if (it->is_array()) {
    for (const Json& e : *it) {
      if (!e.is_number_integer()) return bad();
      out.push_back(e.get<int64_t>());
    }
  } else {
    return bad();
  }
  return out;
}

StatusOr<RopeScaling> ParseRopeScaling(const Json& j, absl::string_view what) {
  RopeScaling rs;
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return rs;
  const Json& r = *it;
  std::string ctx = absl::StrCat(what, ": rope_scaling");
  if (!r.is_object()) return absl::InvalidArgumentError(absl::StrCat(ctx, " must be an object"));
  std::string type;
  if (r.contains("rope_type")) {
    ASSIGN_OR_RETURN(type, GetField<std::string>(r, "rope_type", ctx));
  } else {
    ASSIGN_OR_RETURN(type, GetField<std::string>(r, "type", ctx));
  }
  if (type == "default") return rs;
  ASSIGN_OR_RETURN(rs.factor, GetField<double>(r, "factor", ctx));
  if (!(rs.factor >= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": factor must be >= 1, got ", rs.factor));
  }
  if (type == "linear") {
    rs.type = RopeScalingType::kLinear;
  } else if (type == "llama3") {
    rs.type = RopeScalingType::kLlama3;
    ASSIGN_OR_RETURN(rs.low_freq_factor, GetFieldOr<double>(r, "low_freq_factor", 1.0, ctx));
    ASSIGN_OR_RETURN(rs.high_freq_factor, GetFieldOr<double>(r, "high_freq_factor", 4.0, ctx));
    ASSIGN_OR_RETURN(rs.original_max_position_embeddings,
                     GetFieldOr<int64_t>(r, "original_max_position_embeddings", 8192, ctx));
    if (!(rs.high_freq_factor > rs.low_freq_factor) || rs.low_freq_factor <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": need 0 < low_freq_factor < high_freq_factor"));
    }
    RETURN_IF_ERROR(Positive(rs.original_max_position_embeddings, "original_max_position_embeddings", ctx));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": unsupported type '", type, "' (supported: default, linear, llama3)"));
  }
  return rs;
}

}  // namespace

int64_t ModelConfig::NumParameters() const {
  int64_t kv = num_key_value_heads * head_dim;
  int64_t q = num_attention_heads * head_dim;
  int64_t attn = hidden_size * q * 2 + hidden_size * kv * 2;
  if (attention_bias) attn += q + 2 * kv + (o_proj_bias ? hidden_size : 0);
  int64_t mlp = 3 * hidden_size * intermediate_size;
  if (mlp_bias) mlp += 2 * intermediate_size + hidden_size;
  int64_t layer = attn + mlp + 2 * hidden_size;
  int64_t emb = vocab_size * hidden_size;
  return num_hidden_layers * layer + hidden_size + emb * (tie_word_embeddings ? 1 : 2);
}

StatusOr<ModelConfig> ParseModelConfig(const Json& j, absl::string_view what) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": expected a JSON object"));
  ModelConfig c;
  ASSIGN_OR_RETURN(c.model_type, GetField<std::string>(j, "model_type", what));
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2") {
    return absl::InvalidArgumentError(absl::StrCat(what, ": unsupported architecture model_type '", c.model_type,
                                                   "' (supported: llama, mistral, qwen2)"));
  }
  ASSIGN_OR_RETURN(std::string act, GetFieldOr<std::string>(j, "hidden_act", "silu", what));
  if (act != "silu") {
    return absl::InvalidArgumentError(absl::StrCat(what, ": unsupported hidden_act '", act, "' (need silu)"));
  }
  ASSIGN_OR_RETURN(c.vocab_size, GetField<int64_t>(j, "vocab_size", what));
  ASSIGN_OR_RETURN(c.hidden_size, GetField<int64_t>(j, "hidden_size", what));
  ASSIGN_OR_RETURN(c.intermediate_size, GetField<int64_t>(j, "intermediate_size", what));
  ASSIGN_OR_RETURN(c.num_hidden_layers, GetField<int64_t>(j, "num_hidden_layers", what));
  ASSIGN_OR_RETURN(c.num_attention_heads, GetField<int64_t>(j, "num_attention_heads", what));
  ASSIGN_OR_RETURN(c.num_key_value_heads, GetFieldOr<int64_t>(j, "num_key_value_heads", c.num_attention_heads, what));
  for (auto [v, name] : {std::pair{c.vocab_size, "vocab_size"},
                         {c.hidden_size, "hidden_size"},
                         {c.intermediate_size, "intermediate_size"},
                         {c.num_hidden_layers, "num_hidden_layers"},
                         {c.num_attention_heads, "num_attention_heads"},
                         {c.num_key_value_heads, "num_key_value_heads"}}) {
    RETURN_IF_ERROR(Positive(v, name, what));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": num_attention_heads (", c.num_attention_heads,
                                                   ") must be a multiple of num_key_value_heads (",
                                                   c.num_key_value_heads, ")"));
  }
  int64_t default_head_dim = c.hidden_size / c.num_attention_heads;
  ASSIGN_OR_RETURN(c.head_dim, GetFieldOr<int64_t>(j, "head_dim", default_head_dim, what));
  RETURN_IF_ERROR(Positive(c.head_dim, "head_dim", what));
  if (!j.contains("head_dim") && c.hidden_size % c.num_attention_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": hidden_size (", c.hidden_size,
                                                   ") must be a multiple of num_attention_heads (",
                                                   c.num_attention_heads, ")"));
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": head_dim must be even for RoPE, got ", c.head_dim));
  }
  ASSIGN_OR_RETURN(c.max_position_embeddings, GetFieldOr<int64_t>(j, "max_position_embeddings", 2048, what));
  RETURN_IF_ERROR(Positive(c.max_position_embeddings, "max_position_embeddings", what));
  ASSIGN_OR_RETURN(c.rms_norm_eps, GetFieldOr<double>(j, "rms_norm_eps", 1e-6, what));
  if (!(c.rms_norm_eps > 0)) return absl::InvalidArgumentError(absl::StrCat(what, ": rms_norm_eps must be positive"));
  ASSIGN_OR_RETURN(c.rope_theta, GetFieldOr<double>(j, "rope_theta", 10000.0, what));
  if (!(c.rope_theta > 0)) return absl::InvalidArgumentError(absl::StrCat(what, ": rope_theta must be positive"));
  ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(j, what));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, GetFieldOr<bool>(j, "tie_word_embeddings", false, what));
  if (c.model_type == "qwen2") {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases, never an o_proj bias.
    c.o_proj_bias = false;
  } else {
    ASSIGN_OR_RETURN(c.attention_bias, GetFieldOr<bool>(j, "attention_bias", false, what));
    c.o_proj_bias = c.attention_bias;
  }
  ASSIGN_OR_RETURN(c.mlp_bias, GetFieldOr<bool>(j, "mlp_bias", false, what));
  if (c.model_type == "mistral" || (c.model_type == "qwen2" && j.value("use_sliding_window", false))) {
    ASSIGN_OR_RETURN(c.sliding_window, GetFieldOr<int64_t>(j, "sliding_window", 0, what));
    if (c.sliding_window < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": sliding_window must be >= 0"));
  }
  ASSIGN_OR_RETURN(c.bos_token_ids, TokenIdList(j, "bos_token_id", what));
  ASSIGN_OR_RETURN(c.eos_token_ids, TokenIdList(j, "eos_token_id", what));
  ASSIGN_OR_RETURN(c.torch_dtype, GetFieldOr<std::string>(j, "torch_dtype", "float32", what));
  return c;
}

StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  std::string path = JoinPath(model_dir, "config.json");
  ASSIGN_OR_RETURN(Json j, ReadJsonFile(path));
  return ParseModelConfig(j, path);
}

Json ModelConfigToJson(const ModelConfig& c) {
  static const char* kArch[][2] = {
      {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}};
  Json j;
  for (auto& a : kArch) {
    if (c.model_type == a[0]) j["architectures"] = Json::array({a[1]});
  }
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == RopeScalingType::kLinear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_scaling.factor}};
  } else if (c.rope_scaling.type == RopeScalingType::kLlama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "qwen2") j["attention_bias"] = c.attention_bias;
  j["mlp_bias"] = c.mlp_bias;
  if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
  auto ids = [](const std::vector<int64_t>& v) -> Json {
    if (v.empty()) return nullptr;
    if (v.size() == 1) return v[0];
    return v;
  };
  j["bos_token_id"] = ids(c.bos_token_ids);
  j["eos_token_id"] = ids(c.eos_token_ids);
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["pretraining_tp"] = 1;
  return j;
}

}  // namespace skillpack
