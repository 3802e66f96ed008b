#include "trainer/trainable.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include "core/file_util.h"
#include "core/model_config.h"
#include "core/tensor_util.h"

namespace skillpack {

const std::vector<std::string>& LoraTargetSuffixes() {
  static const auto* kSuffixes = new std::vector<std::string>{
      "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
      "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  return *kSuffixes;
}

namespace {

// The starting value of LoRA parameter `name` of `shape` from `init`: a float32
// copy, or INVALID_ARGUMENT naming the parameter.
StatusOr<at::Tensor> InitialLoraTensor(const std::map<std::string, at::Tensor>& init, const std::string& name,
                                       const std::vector<int64_t>& shape) {
  auto it = init.find(name);
  if (it == init.end()) return absl::InvalidArgumentError(absl::StrCat("the adapter has no ", name));
  if (it->second.sizes().vec() != shape) {
    return absl::InvalidArgumentError(absl::StrCat("the adapter's ", name, " is ",
                                                   ShapeString(it->second.sizes().vec()), ", this model needs ",
                                                   ShapeString(shape)));
  }
  return it->second.detach().to(at::kFloat).clone();
}

}  // namespace

StatusOr<std::unique_ptr<TrainableWeights>> TrainableWeights::Create(std::shared_ptr<const ModelWeights> base,
                                                                     const LoraConfig& lora, uint64_t seed,
                                                                     const std::map<std::string, at::Tensor>* init) {
  if (lora.rank < 0) return absl::InvalidArgumentError(absl::StrCat("lora.rank must be >= 0, got ", lora.rank));
  if (lora.enabled() && !(lora.alpha > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("lora.alpha must be > 0, got ", lora.alpha));
  }
  if (init != nullptr && !lora.enabled()) {
    return absl::InvalidArgumentError("an adapter to start from needs LoRA (lora.rank > 0)");
  }
  std::unique_ptr<TrainableWeights> t(new TrainableWeights());
  t->base_ = std::move(base);
  t->lora_ = lora;
  try {
    if (!lora.enabled()) {
      std::map<std::string, at::Tensor> copies;
      for (const auto& [name, w] : t->base_->tensors()) {
        at::Tensor p = w.detach().to(at::kFloat).clone().requires_grad_(true);
        copies.emplace(name, p);
        t->params_.emplace_back(name, p);
      }
      ASSIGN_OR_RETURN(t->full_, ModelWeights::Create(t->base_->config(), std::move(copies)));
    } else {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      const ModelConfig& c = t->base_->config();
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        for (const std::string& suffix : LoraTargetSuffixes()) {
          const std::string name = LayerTensorName(l, suffix);
          const at::Tensor* w = t->base_->Find(name);
          if (w == nullptr) return absl::InternalError(absl::StrCat("base has no tensor ", name));
          const int64_t out = w->size(0), in = w->size(1);
          const double bound = 1.0 / std::sqrt(static_cast<double>(in));
          at::Tensor a = at::empty({lora.rank, in}, at::kFloat).uniform_(-bound, bound, gen);
          at::Tensor b = at::zeros({out, lora.rank}, at::kFloat);
          if (init != nullptr) {
            ASSIGN_OR_RETURN(a, InitialLoraTensor(*init, name + ".lora_A", {lora.rank, in}));
            ASSIGN_OR_RETURN(b, InitialLoraTensor(*init, name + ".lora_B", {out, lora.rank}));
          }
          t->params_.emplace_back(name + ".lora_A", a.to(w->device()).requires_grad_(true));
          t->params_.emplace_back(name + ".lora_B", b.to(w->device()).requires_grad_(true));
        }
      }
      if (init != nullptr && init->size() != t->params_.size()) {
        for (const auto& [name, tensor] : *init) {
          const bool used = std::any_of(t->params_.begin(), t->params_.end(),
                                        [&name = name](const auto& p) { return p.first == name; });
          if (!used)
            return absl::InvalidArgumentError(
                absl::StrCat("the adapter's ", name, " adapts no projection of this model"));
        }
      }
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "creating trainable weights");
  }
  return t;
}

int64_t TrainableWeights::NumTrainable() const {
  int64_t n = 0;
  for (const auto& [name, p] : params_) n += p.numel();
  return n;
}

std::map<std::string, at::Tensor> TrainableWeights::LoraReplacements(bool detached) const {
  const double scale = lora_.alpha / static_cast<double>(lora_.rank);
  std::map<std::string, at::Tensor> out;
  // params_ holds (A, B) pairs in order.
  for (size_t i = 0; i + 1 < params_.size(); i += 2) {
    const std::string& a_name = params_[i].first;
    const std::string name = a_name.substr(0, a_name.size() - std::string(".lora_A").size());
    at::Tensor a = detached ? params_[i].second.detach() : params_[i].second;
    at::Tensor b = detached ? params_[i + 1].second.detach() : params_[i + 1].second;
    const at::Tensor& w = *base_->Find(name);
    out.emplace(name, at::addmm(w.to(at::kFloat), b, a, /*beta=*/1.0, /*alpha=*/scale));
  }
  return out;
}

StatusOr<std::shared_ptr<const ModelWeights>> TrainableWeights::ForwardWeights() const {
  if (!lora_.enabled()) return full_;
  try {
    return base_->WithReplaced(LoraReplacements(/*detached=*/false));
  } catch (const std::exception& e) {
    return StatusFromException(e, "building LoRA weights");
  }
}

StatusOr<std::shared_ptr<const ModelWeights>> TrainableWeights::Merged() const {
  try {
    if (lora_.enabled()) {
      at::NoGradGuard no_grad;
      return base_->WithReplaced(LoraReplacements(/*detached=*/true));
    }
    std::map<std::string, at::Tensor> detached;
    for (const auto& [name, p] : params_) detached.emplace(name, p.detach());
    return ModelWeights::Create(base_->config(), std::move(detached));
  } catch (const std::exception& e) {
    return StatusFromException(e, "merging weights");
  }
}

Status ExportModelFolder(const ModelWeights& weights, const std::string& base_dir, const std::string& out_dir) {
  RETURN_IF_ERROR(MakeDirectories(out_dir));
  RETURN_IF_ERROR(weights.Save(out_dir));
  if (!PathExists(JoinPath(base_dir, "config.json"))) {
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(out_dir, "config.json"), ModelConfigToJson(weights.config()).dump(2)));
  }
  for (const char* file : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                           "special_tokens_map.json"}) {
    const std::string src = JoinPath(base_dir, file);
    if (!PathExists(src)) continue;
    ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(src));
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(out_dir, file), bytes));
  }
  return absl::OkStatus();
}

}  // namespace skillpack
