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
//   metadata format="skillpack-router", format_version="1" to "7",
//            config = JSON {labels, layer, hidden_size, width, base_fingerprint,
//                           assignment (v2), layers and pooling (v3;
//                           v4 when pooling has "surprisal", v5 when it
//                           has "surprisal_profile", v6 when it has
//                           "lexicon", v7 when it has "lexicon_max", with
//                           the lexicon's fingerprint)}
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
#include "router/lexicon.h"
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
// Pooling::kSurprisalProfile when listed (wherever in `pooling`), then the
// kLexiconFeatureSize values of Pooling::kLexicon when listed, then those of
// Pooling::kLexiconMax when listed: `lexicon`'s Features of each prompt's
// text, `texts` (one per prompt; required then), the mean and the maximum
// over its words.
// kSurprisal and kSurprisalProfile run the rest of the model, final norm and
// lm_head for the tokens' surprisals (policy.h): one forward pass of the
// whole model in all.
// INVALID_ARGUMENT for empty prompts, token ids out of range, bad or
// unordered layers, no pooling, a lexical block without a lexicon or one text per prompt.
StatusOr<at::Tensor> PromptFeatures(const Transformer& model, const ModelWeights& weights,
                                    const std::vector<std::vector<int32_t>>& prompts,
                                    const std::vector<int64_t>& layers, const std::vector<Pooling>& pooling,
                                    const std::vector<std::string>* texts = nullptr, const Lexicon* lexicon = nullptr);

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
  // layer count or fingerprint), names a pack not in `known_packs`, or reads
  // a lexicon (a lexical block, policy.h) that Lexicon::Default() cannot load or
  // whose fingerprint differs.
  Status CheckFits(const ModelConfig& config, absl::string_view base_fingerprint,
                   const std::set<std::string>& known_packs) const;

  // Probabilities [N, labels] for features [N, FeatureSize()].
  at::Tensor Scores(const at::Tensor& features) const;
  // This router's features (config layers and pooling) for tokenised
  // prompts and, for its lexical blocks (policy.h's IsLexical), their texts
  // (unused otherwise; required with it), read with Lexicon::Default()
  // (FAILED_PRECONDITION when that is not the router's lexicon).
  StatusOr<at::Tensor> Features(const Transformer& model, const ModelWeights& base,
                                const std::vector<std::vector<int32_t>>& prompts,
                                const std::vector<std::string>* texts = nullptr) const;
  // Features + scores + policy for one tokenised prompt (and its text, for
  // a router that reads the lexical block).
  StatusOr<RouteDecision> Route(const Transformer& model, const ModelWeights& base, const std::vector<int32_t>& prompt,
                                const RoutingPolicy& policy, const std::string* text = nullptr) const;
  // True when Features and Route need the prompts' texts.
  bool NeedsText() const;

  const RouterConfig& config() const { return config_; }

 private:
  Router() = default;
  RouterConfig config_;
  at::Tensor mean_, std_, w1_, b1_, w2_, b2_;
};

}  // namespace skillpack

#endif  // SKILLPACK_ROUTER_ROUTER_H_
