#include "core/weights.h"

#include <ATen/ATen.h>

#include "core/checkpoint.h"
#include "core/safetensors.h"
#include "core/tensor_util.h"

namespace skillpack {

std::string LayerTensorName(int64_t layer, absl::string_view suffix) {
  return absl::StrCat("model.layers.", layer, ".", suffix);
}

absl::string_view LayerTensorSuffix(LayerTensor t) {
  static constexpr absl::string_view kSuffixes[kLayerTensors] = {
      "input_layernorm.weight",  "self_attn.q_proj.weight",
      "self_attn.k_proj.weight", "self_attn.v_proj.weight",
      "self_attn.o_proj.weight", "self_attn.q_proj.bias",
      "self_attn.k_proj.bias",   "self_attn.v_proj.bias",
      "self_attn.o_proj.bias",   "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",    "mlp.up_proj.weight",
      "mlp.down_proj.weight",    "mlp.gate_proj.bias",
      "mlp.up_proj.bias",        "mlp.down_proj.bias"};
  return kSuffixes[static_cast<int>(t)];
}

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) {
  const int64_t d = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim,
                f = c.intermediate_size;
  std::vector<TensorSpec> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, d}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto add = [&](LayerTensor t, std::vector<int64_t> shape) {
      out.push_back({LayerTensorName(i, LayerTensorSuffix(t)), std::move(shape)});
    };
    using T = LayerTensor;
    add(T::kInputNorm, {d});
    add(T::kQ, {q, d});
    add(T::kK, {kv, d});
    add(T::kV, {kv, d});
    add(T::kO, {d, q});
    if (c.attention_bias) {
      add(T::kQBias, {q});
      add(T::kKBias, {kv});
      add(T::kVBias, {kv});
      if (c.o_proj_bias) add(T::kOBias, {d});
    }
    add(T::kPostAttentionNorm, {d});
    add(T::kGate, {f, d});
    add(T::kUp, {f, d});
    add(T::kDown, {d, f});
    if (c.mlp_bias) {
      add(T::kGateBias, {f});
      add(T::kUpBias, {f});
      add(T::kDownBias, {d});
    }
  }
  out.push_back({"model.norm.weight", {d}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, d}});
  return out;
}

ModelWeights::ModelWeights(ModelConfig config, std::map<std::string, at::Tensor> tensors)
    : config_(std::move(config)), tensors_(std::move(tensors)) {}

StatusOr<std::shared_ptr<const ModelWeights>> ModelWeights::Create(const ModelConfig& config,
                                                                   std::map<std::string, at::Tensor> tensors) {
  if (config.tie_word_embeddings) tensors.erase("lm_head.weight");
  std::vector<TensorSpec> specs = ExpectedTensors(config);
  for (const TensorSpec& s : specs) {
    auto it = tensors.find(s.name);
    if (it == tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat("missing weight tensor '", s.name, "'"));
    }
    if (it->second.sizes().vec() != s.shape) {
      return absl::InvalidArgumentError(absl::StrCat("weight '", s.name, "' has shape ",
                                                     ShapeString(it->second.sizes().vec()), ", expected ",
                                                     ShapeString(s.shape)));
    }
  }
  if (tensors.size() != specs.size()) {
    for (const auto& [name, t] : tensors) {
      bool known = false;
      for (const TensorSpec& s : specs) known = known || s.name == name;
      if (!known) {
        // Rotary caches some exporters write are derived data: ignore them.
        if (absl::string_view(name).find("rotary_emb.inv_freq") != absl::string_view::npos) continue;
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected weight tensor '", name, "' for model_type ", config.model_type));
      }
    }
    for (auto it = tensors.begin(); it != tensors.end();) {
      if (absl::string_view(it->first).find("rotary_emb.inv_freq") != absl::string_view::npos) {
        it = tensors.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::shared_ptr<ModelWeights> w(new ModelWeights(config, std::move(tensors)));
  RETURN_IF_ERROR(w->Resolve());
  return std::shared_ptr<const ModelWeights>(std::move(w));
}

Status ModelWeights::Resolve() {
  auto get = [&](const std::string& n) -> at::Tensor {
    auto it = tensors_.find(n);
    return it == tensors_.end() ? at::Tensor() : it->second;
  };
  embed_ = get("model.embed_tokens.weight");
  norm_ = get("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_ : get("lm_head.weight");
  layers_.clear();
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    auto l = [&](LayerTensor t) { return get(LayerTensorName(i, LayerTensorSuffix(t))); };
    using T = LayerTensor;
    LayerWeights lw;
    lw.input_norm = l(T::kInputNorm);
    lw.post_attention_norm = l(T::kPostAttentionNorm);
    lw.q = l(T::kQ);
    lw.k = l(T::kK);
    lw.v = l(T::kV);
    lw.o = l(T::kO);
    lw.q_bias = l(T::kQBias);
    lw.k_bias = l(T::kKBias);
    lw.v_bias = l(T::kVBias);
    lw.o_bias = l(T::kOBias);
    lw.gate = l(T::kGate);
    lw.up = l(T::kUp);
    lw.down = l(T::kDown);
    lw.gate_bias = l(T::kGateBias);
    lw.up_bias = l(T::kUpBias);
    lw.down_bias = l(T::kDownBias);
    layers_.push_back(std::move(lw));
  }
  return absl::OkStatus();
}

StatusOr<std::shared_ptr<const ModelWeights>> ModelWeights::Load(const ModelConfig& config, const std::string& dir,
                                                                 const at::TensorOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  std::map<std::string, at::Tensor> tensors;
  try {
    for (const std::string& name : ckpt->names()) {
      ASSIGN_OR_RETURN(TensorView view, ckpt->Get(name));
      ASSIGN_OR_RETURN(at::Tensor t, TensorFromView(view, options));
      tensors.emplace(name, std::move(t));
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("loading weights from ", dir));
  }
  auto w = Create(config, std::move(tensors));
  if (!w.ok()) return Annotate(w.status(), dir);
  return w;
}

StatusOr<std::shared_ptr<const ModelWeights>> ModelWeights::WithReplaced(
    const std::map<std::string, at::Tensor>& replacements) const {
  std::map<std::string, at::Tensor> merged = tensors_;
  for (const auto& [name, t] : replacements) {
    auto it = merged.find(name);
    if (it == merged.end()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot replace unknown weight '", name, "'"));
    }
    if (!t.sizes().equals(it->second.sizes())) {
      return absl::InvalidArgumentError(absl::StrCat("replacement for '", name, "' has shape ",
                                                     ShapeString(t.sizes().vec()), ", expected ",
                                                     ShapeString(it->second.sizes().vec())));
    }
    it->second = t;
  }
  std::shared_ptr<ModelWeights> w(new ModelWeights(config_, std::move(merged)));
  RETURN_IF_ERROR(w->Resolve());
  return std::shared_ptr<const ModelWeights>(std::move(w));
}

const at::Tensor* ModelWeights::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

int64_t ModelWeights::TotalBytes() const {
  int64_t n = 0;
  for (const auto& [name, t] : tensors_) n += t.numel() * static_cast<int64_t>(t.element_size());
  return n;
}

Status ModelWeights::Save(const std::string& dir, const std::string& dtype_name, uint64_t max_shard_bytes) const {
  ASSIGN_OR_RETURN(DType dtype, DTypeFromTorchName(dtype_name));
  std::vector<at::Tensor> keep;  // owns converted host copies while writing
  std::vector<TensorToWrite> out;
  try {
    for (const auto& [name, t] : tensors_) {
      keep.push_back(TensorForWrite(t, dtype));
      const at::Tensor& h = keep.back();
      out.push_back({name, dtype, h.sizes().vec(), h.data_ptr(), static_cast<size_t>(h.numel()) * h.element_size()});
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "saving weights");
  }
  return WriteCheckpoint(dir, out, max_shard_bytes, {{"format", "pt"}});
}

}  // namespace skillpack
