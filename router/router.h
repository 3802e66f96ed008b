// The learned router: features of a request (the base model's hidden state at
// a shallow layer, mean-pooled over the prompt), a small MLP over them, a
// softmax over the router's labels (index 0 is "none", the others name packs),
// and the policy that turns scores into packs with mixture weights.
//
// File format (a safetensors file, see docs/router-format.md):
//   tensors  feature_mean F32 [hidden], feature_std F32 [hidden],
//            fc1.weight F32 [width, hidden], fc1.bias F32 [width],
//            fc2.weight F32 [labels, width], fc2.bias F32 [labels]
//   metadata format="skillpack-router", format_version="1",
//            config = JSON {labels, layer, hidden_size, width, base_fingerprint}
#ifndef SKILLPACK_ROUTER_ROUTER_H_
#define SKILLPACK_ROUTER_ROUTER_H_

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model.h"
#include "core/status.h"
#include "router/policy.h"

namespace skillpack {

// Mean-pooled hidden states after `layer` decoder layers for each prompt:
// float32 [N, hidden] on the CPU. Prompts are processed in padded batches.
StatusOr<at::Tensor> PromptFeatures(const Transformer& model, const ModelWeights& weights,
                                    const std::vector<std::vector<int32_t>>& prompts, int64_t layer);

class Router {
 public:
  // Validates shapes, labels (unique, [0] == "none", others valid pack names) and config.
  static StatusOr<std::unique_ptr<Router>> Create(RouterConfig config, at::Tensor mean, at::Tensor std, at::Tensor w1,
                                                  at::Tensor b1, at::Tensor w2, at::Tensor b2);
  static StatusOr<std::unique_ptr<Router>> Load(const std::string& path);
  static StatusOr<std::unique_ptr<Router>> Parse(std::string bytes, absl::string_view what);
  Status Save(const std::string& path) const;
  StatusOr<std::string> Serialize() const;

  // FAILED_PRECONDITION when the router was built for another base (hidden size,
  // layer count or fingerprint), or names a pack not in `known_packs`.
  Status CheckFits(const ModelConfig& config, absl::string_view base_fingerprint,
                   const std::set<std::string>& known_packs) const;

  // Probabilities [N, labels] for features [N, hidden].
  at::Tensor Scores(const at::Tensor& features) const;
  // Features + scores + policy for one tokenised prompt.
  StatusOr<RouteDecision> Route(const Transformer& model, const ModelWeights& base, const std::vector<int32_t>& prompt,
                                const RoutingPolicy& policy) const;

  const RouterConfig& config() const { return config_; }

 private:
  Router() = default;
  RouterConfig config_;
  at::Tensor mean_, std_, w1_, b1_, w2_, b2_;
};

}  // namespace skillpack

#endif  // SKILLPACK_ROUTER_ROUTER_H_
