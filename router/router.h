// The learned router: features of a request (the base model's hidden states
// after one or more shallow layers, pooled over the prompt: mean, max, last
// token or surprisal-weighted mean; optionally a profile of the surprisals
// themselves), a small MLP over them, a softmax over
// the router's labels (index 0 is "none", the others name packs), and the
// policy that turns scores into packs with mixture weights.
//
// File format (a safetensors file, see docs/router-format.md), F = the
// feature size (RouterConfig::FeatureSize; the hidden size for version 1):
//   tensors  feature_mean F32 [F], feature_std F32 [F],
//            fc1.weight F32 [width, F], fc1.bias F32 [width],
//            fc2.weight F32 [labels, width], fc2.bias F32 [labels]
//   metadata format="skillpack-router", format_version="1" to "5",
//            config = JSON {labels, layer, hidden_size, width, base_fingerprint,
//                           assignment (v2), layers and pooling (v3;
//                           v4 when pooling has "surprisal", v5 when it
//                           has "surprisal_profile")}
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
// The hidden states after each of `layers` decoder layers (strictly
// ascending, each in [0, num_hidden_layers]; one forward pass serves them
// all), pooled by each of `pooling` over each prompt's tokens: float32
// [N, RouterConfig::FeatureSize] on the CPU, blocks ordered layer-major
// (layers[0] x pooling[0], layers[0] x pooling[1], ..., counting only the
// poolings of hidden states), then the kSurprisalProfileSize values of
// Pooling::kSurprisalProfile when listed (wherever in `pooling`).
// kSurprisal and kSurprisalProfile run the rest of the model, final norm and
// lm_head for the tokens' surprisals (policy.h): one forward pass of the
// whole model in all.
// INVALID_ARGUMENT for empty prompts, token ids out of range, bad or
// unordered layers, no pooling.
StatusOr<at::Tensor> PromptFeatures(const Transformer& model, const ModelWeights& weights,
                                    const std::vector<std::vector<int32_t>>& prompts,
                                    const std::vector<int64_t>& layers, const std::vector<Pooling>& pooling);

class Router {
 public:
  // Validates shapes, labels (unique, [0] == "none", others valid pack names) and
  // config; fills in config.layers ({layer}) and config.pooling ({mean}) when
  // empty, and requires layer == layers.back() otherwise.
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

  // Probabilities [N, labels] for features [N, FeatureSize()].
  at::Tensor Scores(const at::Tensor& features) const;
  // This router's features (config layers and pooling) for tokenised prompts.
  StatusOr<at::Tensor> Features(const Transformer& model, const ModelWeights& base,
                                const std::vector<std::vector<int32_t>>& prompts) const;
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
