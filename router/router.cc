#include "router/router.h"

#include <algorithm>
#include <limits>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/numbers.h"
#include "core/file_util.h"
#include "core/safetensors.h"
#include "core/sha256.h"
#include "core/tensor_util.h"
#include "core/weights.h"
#include "pack/skillpack.h"

namespace skillpack {
namespace {

constexpr char kFormat[] = "skillpack-router";
constexpr int64_t kFeatureBatch = 16;

Status CheckShape(const at::Tensor& t, std::vector<int64_t> shape, const char* name) {
  if (!t.defined() || t.sizes().vec() != shape) {
    return absl::InvalidArgumentError(absl::StrCat("router tensor ", name, " has shape ",
                                                   t.defined() ? ShapeString(t.sizes().vec()) : "none", ", expected ",
                                                   ShapeString(shape)));
  }
  return absl::OkStatus();
}

// Positions of a prompt batch whose logits are made at once by
// TokenSurprisal: bounds the [B, chunk, vocab] logits it holds.
constexpr int64_t kSurprisalChunk = 64;

// Each token's surprisal s_t = -ln p(token t | tokens before it) [B, T]
// (float32; 0 where not scored) and which tokens are scored [B, T] (bool:
// real tokens 1..n-1), from the last decoder layer's states `last` [B, T,
// hidden] of right-padded tokens [B, T] with mask [B, T], through the model's
// final norm and lm_head as Forward. Logits are made kSurprisalChunk
// positions at a time.
std::pair<at::Tensor, at::Tensor> TokenSurprisal(const ModelConfig& c, const ModelWeights& weights,
                                                 const at::Tensor& last, const at::Tensor& tokens,
                                                 const at::Tensor& mask) {
  const int64_t B = tokens.size(0), T = tokens.size(1);
  at::Tensor s = at::zeros({B, T}, at::kFloat).to(tokens.device());
  at::Tensor normed = RmsNorm(last, weights.final_norm(), c.rms_norm_eps);
  // Position t predicts token t + 1.
  for (int64_t t0 = 0; t0 + 1 < T; t0 += kSurprisalChunk) {
    const int64_t n = std::min(kSurprisalChunk, T - 1 - t0);
    at::Tensor logits = at::linear(normed.narrow(1, t0, n), weights.lm_head()).to(at::kFloat);  // [B, n, V]
    at::Tensor next = tokens.narrow(1, t0 + 1, n).unsqueeze(-1);
    s.narrow(1, t0 + 1, n).copy_(at::logsumexp(logits, -1) - logits.gather(2, next).squeeze(-1));
  }
  at::Tensor scored = mask != 0;
  scored.select(1, 0).fill_(false);
  return {s.masked_fill(scored.logical_not(), 0.0), scored};
}

// policy.h's kSurprisal weights [B, T] (float32, rows summing to 1): softmax
// over each prompt's scored tokens of surprisal / the temperature, token 0 and
// padding 0; a one-token prompt puts its weight on token 0.
at::Tensor SurprisalWeights(const at::Tensor& surprisal, const at::Tensor& scored) {
  const float kInf = std::numeric_limits<float>::infinity();
  at::Tensor score = (surprisal / kSurprisalTemperature).masked_fill(scored.logical_not(), -kInf);
  // Prompts of one token: all their scores are -inf; token 0 gets 0.
  score.select(1, 0).masked_fill_(scored.sum(1) == 0, 0.0);
  return at::softmax(score, 1);
}

// policy.h's kSurprisalProfile [B, kSurprisalProfileSize] (float32, on the
// CPU) from TokenSurprisal's two tensors.
at::Tensor SurprisalProfile(const at::Tensor& surprisal, const at::Tensor& scored) {
  const at::Tensor s_cpu = surprisal.to(at::kCPU).contiguous();
  const at::Tensor ok_cpu = scored.to(at::kCPU).contiguous();
  const auto s = s_cpu.accessor<float, 2>();
  const auto ok = ok_cpu.accessor<bool, 2>();
  const int64_t B = s.size(0), T = s.size(1);
  at::Tensor out = at::zeros({B, kSurprisalProfileSize}, at::kFloat);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<float> v;  // the prompt's surprisals, in order
    for (int64_t t = 0; t < T; ++t) {
      if (ok[b][t]) v.push_back(s[b][t]);
    }
    if (v.empty()) continue;
    float* row = out[b].data_ptr<float>();
    double sum = 0;
    for (float x : v) sum += x;
    row[0] = static_cast<float>(sum / v.size());
    row[1] = *std::max_element(v.begin(), v.end());
    for (int64_t w = 2; w <= 4; ++w) {
      const size_t width = std::min(static_cast<size_t>(w), v.size());
      float best = -std::numeric_limits<float>::infinity();
      for (size_t i = 0; i + width <= v.size(); ++i) {
        best = std::max(best, *std::min_element(v.begin() + i, v.begin() + i + width));
      }
      row[w] = best;
    }
  }
  return out;
}

// The lexicon a router with lexicon features reads: Lexicon::Default(),
// FAILED_PRECONDITION when it cannot be loaded or is not the one the router
// was trained with.
StatusOr<const Lexicon*> RouterLexicon(const RouterConfig& config) {
  StatusOr<const Lexicon*> lex = Lexicon::Default();
  if (!lex.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("router reads lexicon features: ", lex.status().message()));
  }
  if ((*lex)->fingerprint() != config.lexicon) {
    return absl::FailedPreconditionError(absl::StrCat("router was trained with lexicon ", config.lexicon.substr(0, 12),
                                                      "..., but ", (*lex)->dir(), " holds lexicon ",
                                                      (*lex)->fingerprint().substr(0, 12), "..."));
  }
  return *lex;
}

}  // namespace

StatusOr<at::Tensor> PromptFeatures(const Transformer& model, const ModelWeights& weights,
                                    const std::vector<std::vector<int32_t>>& prompts, int64_t layer) {
  return PromptFeatures(model, weights, prompts, std::vector<int64_t>{layer}, {Pooling::kMean});
}

StatusOr<at::Tensor> PromptFeatures(const Transformer& model, const ModelWeights& weights,
                                    const std::vector<std::vector<int32_t>>& prompts,
                                    const std::vector<int64_t>& layers, const std::vector<Pooling>& pooling,
                                    const std::vector<std::string>* texts, const Lexicon* lexicon) {
  const ModelConfig& c = model.config();
  if (layers.empty()) return absl::InvalidArgumentError("router features need at least one layer");
  if (pooling.empty()) return absl::InvalidArgumentError("router features need at least one pooling");
  const bool need_lexicon = ReadsLexicon(pooling);
  if (need_lexicon && lexicon == nullptr) {
    return absl::InvalidArgumentError("router lexicon features need a lexicon");
  }
  if (need_lexicon && (texts == nullptr || texts->size() != prompts.size())) {
    return absl::InvalidArgumentError("router lexicon features need each prompt's text");
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] > c.num_hidden_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("router layer must be in [0, ", c.num_hidden_layers, "], got ", layers[i]));
    }
    if (i > 0 && layers[i] <= layers[i - 1]) {
      return absl::InvalidArgumentError("router layers must be strictly ascending");
    }
  }
  const bool need_weights = HasPooling(pooling, Pooling::kSurprisal);
  const bool need_profile = HasPooling(pooling, Pooling::kSurprisalProfile);
  const bool need_surprisal = need_weights || need_profile;  // both need the whole model's logits
  std::vector<Pooling> hidden_pooling;                       // the blocks of hidden states, per layer
  for (Pooling p : pooling) {
    if (PoolsHiddenStates(p)) hidden_pooling.push_back(p);
  }
  const size_t P = hidden_pooling.size();
  try {
    c10::InferenceMode guard;
    std::vector<at::Tensor> out;
    const at::Device device = weights.embed_tokens().device();
    for (size_t start = 0; start < prompts.size(); start += kFeatureBatch) {
      size_t end = std::min(prompts.size(), start + static_cast<size_t>(kFeatureBatch));
      int64_t T = 0;
      for (size_t i = start; i < end; ++i) {
        if (prompts[i].empty()) return absl::InvalidArgumentError(absl::StrCat("prompt ", i, " has no tokens"));
        for (int32_t t : prompts[i]) {
          if (t < 0 || t >= c.vocab_size) {
            return absl::InvalidArgumentError(absl::StrCat("prompt ", i, ": token id ", t, " out of range"));
          }
        }
        T = std::max<int64_t>(T, prompts[i].size());
      }
      const int64_t B = static_cast<int64_t>(end - start);
      std::vector<int64_t> tok(B * T, 0), mask(B * T, 0), last(B, 0);
      for (int64_t b = 0; b < B; ++b) {
        const auto& p = prompts[start + b];
        for (size_t t = 0; t < p.size(); ++t) tok[b * T + t] = p[t], mask[b * T + t] = 1;
        last[b] = static_cast<int64_t>(p.size()) - 1;
      }
      at::Tensor tokens = at::tensor(tok, at::kLong).view({B, T}).to(device);
      at::Tensor m = at::tensor(mask, at::kLong).view({B, T}).to(device);
      at::Tensor mf = m.to(at::kFloat).unsqueeze(-1);
      at::Tensor last_index = at::tensor(last, at::kLong).to(device);
      // Embeddings, then one decoder layer at a time (LayerForward chained
      // from the embeddings is HiddenStates layer by layer), pooling the
      // states of `layers` as they pass. The surprisal pooling and profile
      // run on to the last layer for the logits, keeping those states until then.
      auto pool = [&](const at::Tensor& hf, Pooling p) {
        switch (p) {
          case Pooling::kMean:
            return (hf * mf).sum(1) / mf.sum(1);
          case Pooling::kMax:
            return hf.masked_fill(mf == 0, -std::numeric_limits<float>::infinity()).amax(1);
          case Pooling::kLast:
            return hf.gather(1, last_index.view({B, 1, 1}).expand({B, 1, hf.size(2)})).squeeze(1);
          case Pooling::kSurprisal:
          case Pooling::kSurprisalProfile:
          case Pooling::kLexicon:
          case Pooling::kLexiconMax:
            break;
        }
        return at::Tensor();  // filled in below
      };
      at::Tensor h = model.HiddenStates(weights, tokens, m, 0);
      const int64_t depth_needed = need_surprisal ? c.num_hidden_layers : layers.back();
      std::vector<at::Tensor> blocks, kept;  // kept: states awaiting the surprisal weights
      for (int64_t depth = 0, next = 0;; ++depth) {
        if (next < static_cast<int64_t>(layers.size()) && layers[next] == depth) {
          at::Tensor hf = h.to(at::kFloat);
          for (Pooling p : hidden_pooling) blocks.push_back(pool(hf, p));
          if (need_weights) kept.push_back(hf);
          ++next;
        }
        if (depth == depth_needed) break;
        h = model.LayerForward(weights, depth, h, m, nullptr);
      }
      if (need_surprisal) {
        const auto [surprisal, scored] = TokenSurprisal(c, weights, h, tokens, m);
        if (need_weights) {
          const at::Tensor w = SurprisalWeights(surprisal, scored).unsqueeze(-1);
          for (size_t i = 0; i < blocks.size(); ++i) {
            if (hidden_pooling[i % P] == Pooling::kSurprisal) blocks[i] = (kept[i / P] * w).sum(1);
          }
        }
        if (need_profile) blocks.push_back(SurprisalProfile(surprisal, scored).to(device));
      }
      for (at::Tensor& b : blocks) b = b.to(at::kCPU);
      for (const auto& [kind, combine] : {std::pair{Pooling::kLexicon, Lexicon::Combine::kMean},
                                          std::pair{Pooling::kLexiconMax, Lexicon::Combine::kMax}}) {
        if (!HasPooling(pooling, kind)) continue;
        at::Tensor lex = at::zeros({B, kLexiconFeatureSize}, at::kFloat);
        for (int64_t b = 0; b < B; ++b) lexicon->Features((*texts)[start + b], lex[b].data_ptr<float>(), combine);
        blocks.push_back(lex);
      }
      out.push_back(at::cat(blocks, 1));
    }
    if (out.empty()) return at::zeros({0, RouterFeatureSize(c.hidden_size, layers.size(), pooling)}, at::kFloat);
    return at::cat(out, 0);
  } catch (const std::exception& e) {
    return StatusFromException(e, "router features");
  }
}

StatusOr<std::unique_ptr<Router>> Router::Create(RouterConfig config, at::Tensor mean, at::Tensor std, at::Tensor w1,
                                                 at::Tensor b1, at::Tensor w2, at::Tensor b2) {
  if (config.labels.size() < 2 || config.labels[0] != kRouterNoneLabel) {
    return absl::InvalidArgumentError("router labels must start with \"none\" and name at least one pack");
  }
  std::set<std::string> seen;
  for (size_t i = 1; i < config.labels.size(); ++i) {
    RETURN_IF_ERROR(Annotate(ValidatePackName(config.labels[i]), "router label"));
    if (!seen.insert(config.labels[i]).second || config.labels[i] == kRouterNoneLabel) {
      return absl::InvalidArgumentError(absl::StrCat("router label '", config.labels[i], "' appears twice"));
    }
  }
  if (!config.assignment.empty()) {
    for (size_t i = 1; i < config.labels.size(); ++i) {
      if (!config.assignment.filters.count(config.labels[i])) {
        return absl::InvalidArgumentError(absl::StrCat("router assignment gives pack label '", config.labels[i],
                                                       "' no modules (every pack label needs an entry)"));
      }
    }
    for (const auto& [pack, filter] : config.assignment.filters) {
      if (!seen.count(pack)) {
        return absl::InvalidArgumentError(
            absl::StrCat("router assignment names pack '", pack, "', which is not a router label"));
      }
    }
  }
  if (config.hidden_size <= 0 || config.width <= 0 || config.layer < 0) {
    return absl::InvalidArgumentError("router config needs positive hidden_size and width, layer >= 0");
  }
  if (config.layers.empty()) config.layers = {config.layer};
  if (config.pooling.empty()) config.pooling = {Pooling::kMean};
  for (size_t i = 0; i < config.layers.size(); ++i) {
    if (config.layers[i] < 0 || (i > 0 && config.layers[i] <= config.layers[i - 1])) {
      return absl::InvalidArgumentError("router config layers must be >= 0 and strictly ascending");
    }
  }
  if (config.layers.back() != config.layer) {
    return absl::InvalidArgumentError(absl::StrCat("router config layer (", config.layer,
                                                   ") must be the last of its layers (", config.layers.back(), ")"));
  }
  std::set<Pooling> pools(config.pooling.begin(), config.pooling.end());
  if (pools.size() != config.pooling.size()) return absl::InvalidArgumentError("router config pooling repeats a kind");
  if (ReadsLexicon(config.pooling) && !IsSha256Hex(config.lexicon)) {
    return absl::InvalidArgumentError("router config with lexicon features needs the lexicon's fingerprint");
  }
  if (!ReadsLexicon(config.pooling)) config.lexicon.clear();
  const int64_t H = config.FeatureSize(), W = config.width, L = static_cast<int64_t>(config.labels.size());
  RETURN_IF_ERROR(CheckShape(mean, {H}, "feature_mean"));
  RETURN_IF_ERROR(CheckShape(std, {H}, "feature_std"));
  RETURN_IF_ERROR(CheckShape(w1, {W, H}, "fc1.weight"));
  RETURN_IF_ERROR(CheckShape(b1, {W}, "fc1.bias"));
  RETURN_IF_ERROR(CheckShape(w2, {L, W}, "fc2.weight"));
  RETURN_IF_ERROR(CheckShape(b2, {L}, "fc2.bias"));
  for (const at::Tensor* t : {&mean, &std, &w1, &b1, &w2, &b2}) {
    if (!at::isfinite(*t).all().item<bool>()) return absl::InvalidArgumentError("router weights are not finite");
  }
  if (!(std > 0).all().item<bool>()) return absl::InvalidArgumentError("router feature_std must be positive");
  std::unique_ptr<Router> r(new Router());
  r->config_ = std::move(config);
  auto f = [](const at::Tensor& t) { return t.detach().to(at::kCPU, at::kFloat).contiguous(); };
  r->mean_ = f(mean), r->std_ = f(std), r->w1_ = f(w1), r->b1_ = f(b1), r->w2_ = f(w2), r->b2_ = f(b2);
  return r;
}

at::Tensor Router::Scores(const at::Tensor& features) const {
  c10::InferenceMode guard;
  at::Tensor x = (features.to(at::kCPU, at::kFloat) - mean_) / std_;
  at::Tensor h = at::gelu(at::linear(x, w1_, b1_));
  return at::softmax(at::linear(h, w2_, b2_), -1);
}

bool Router::NeedsText() const { return ReadsLexicon(config_.pooling); }

StatusOr<at::Tensor> Router::Features(const Transformer& model, const ModelWeights& base,
                                      const std::vector<std::vector<int32_t>>& prompts,
                                      const std::vector<std::string>* texts) const {
  const Lexicon* lexicon = nullptr;
  if (NeedsText()) {
    ASSIGN_OR_RETURN(lexicon, RouterLexicon(config_));
    if (texts == nullptr) return absl::InvalidArgumentError("this router reads the prompts' text (lexicon features)");
  }
  return PromptFeatures(model, base, prompts, config_.layers, config_.pooling, texts, lexicon);
}

StatusOr<RouteDecision> Router::Route(const Transformer& model, const ModelWeights& base,
                                      const std::vector<int32_t>& prompt, const RoutingPolicy& policy,
                                      const std::string* text) const {
  std::vector<std::string> texts;
  if (text != nullptr) texts.push_back(*text);
  ASSIGN_OR_RETURN(at::Tensor feats, Features(model, base, {prompt}, text != nullptr ? &texts : nullptr));
  at::Tensor s = Scores(feats)[0].contiguous();
  std::vector<float> scores(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
  RouteDecision d = DecideRoute(scores, config_.labels, policy);
  ApplyRouterAssignment(config_.assignment, &d);
  return d;
}

Status Router::CheckFits(const ModelConfig& config, absl::string_view base_fingerprint,
                         const std::set<std::string>& known_packs) const {
  if (config.hidden_size != config_.hidden_size || config_.layer > config.num_hidden_layers) {
    return absl::FailedPreconditionError(absl::StrCat(
        "router was built for a base with hidden size ", config_.hidden_size, " (layer ", config_.layer,
        "), but this base has hidden size ", config.hidden_size, " and ", config.num_hidden_layers, " layers"));
  }
  if (!config_.base_fingerprint.empty() && config_.base_fingerprint != base_fingerprint) {
    return absl::FailedPreconditionError(
        absl::StrCat("router was built for base ", config_.base_fingerprint, " but this base is ", base_fingerprint));
  }
  if (!config_.assignment.empty()) {
    std::vector<std::string> names;
    for (const TensorSpec& t : ExpectedTensors(config)) names.push_back(t.name);
    Status ok = CheckAssignmentExclusive(config_.assignment, names);
    if (!ok.ok()) return absl::FailedPreconditionError(absl::StrCat("router: ", ok.message()));
  }
  for (size_t i = 1; i < config_.labels.size(); ++i) {
    if (!known_packs.count(config_.labels[i])) {
      return absl::FailedPreconditionError(
          absl::StrCat("router label '", config_.labels[i], "' names a pack that is not in the store"));
    }
  }
  if (NeedsText()) RETURN_IF_ERROR(RouterLexicon(config_).status());
  return absl::OkStatus();
}

StatusOr<std::string> Router::Serialize() const {
  SafetensorsWriter w;
  w.SetMetadata("format", kFormat);
  // The lowest version that holds this router: version 1 readers would ignore
  // an assignment (version 2), version 2 readers other features (version 3),
  // version 3 readers the surprisal pooling (version 4), version 4 readers
  // the surprisal profile (version 5), version 5 readers the lexical block
  // (version 6), version 6 readers its maximum over the words (version 7).
  const int version = HasPooling(config_.pooling, Pooling::kLexiconMax)         ? 7
                      : NeedsText()                                             ? 6
                      : HasPooling(config_.pooling, Pooling::kSurprisalProfile) ? 5
                      : HasPooling(config_.pooling, Pooling::kSurprisal)        ? 4
                      : !config_.SingleMeanFeatures()                           ? 3
                      : !config_.assignment.empty()                             ? 2
                                                                                : 1;
  w.SetMetadata("format_version", std::to_string(version));
  Json cfg = {{"labels", config_.labels},
              {"layer", config_.layer},
              {"hidden_size", config_.hidden_size},
              {"width", config_.width},
              {"base_fingerprint", config_.base_fingerprint}};
  if (!config_.assignment.empty()) cfg["assignment"] = ModuleAssignmentToJson(config_.assignment);
  if (!config_.SingleMeanFeatures()) {
    std::vector<std::string> pooling;
    for (Pooling p : config_.pooling) pooling.push_back(PoolingName(p));
    cfg["layers"] = config_.layers;
    cfg["pooling"] = pooling;
  }
  if (NeedsText()) cfg["lexicon"] = config_.lexicon;
  w.SetMetadata("config", cfg.dump());
  std::pair<const char*, const at::Tensor*> tensors[] = {{"feature_mean", &mean_}, {"feature_std", &std_},
                                                         {"fc1.weight", &w1_},     {"fc1.bias", &b1_},
                                                         {"fc2.weight", &w2_},     {"fc2.bias", &b2_}};
  for (auto& [name, t] : tensors) {
    RETURN_IF_ERROR(w.Add(name, DType::kF32, t->sizes().vec(), t->data_ptr(), t->numel() * sizeof(float)));
  }
  return w.Serialize();
}

Status Router::Save(const std::string& path) const {
  ASSIGN_OR_RETURN(std::string bytes, Serialize());
  return WriteFileAtomically(path, bytes);
}

StatusOr<std::unique_ptr<Router>> Router::Parse(std::string bytes, absl::string_view what) {
  ASSIGN_OR_RETURN(auto file, SafetensorsFile::FromBuffer(std::move(bytes), std::string(what)));
  const auto& md = file->metadata();
  auto get = [&](const char* key) -> StatusOr<std::string> {
    auto it = md.find(key);
    if (it == md.end())
      return absl::InvalidArgumentError(absl::StrCat(what, ": not a router file (no metadata '", key, "')"));
    return it->second;
  };
  ASSIGN_OR_RETURN(std::string format, get("format"));
  if (format != kFormat)
    return absl::InvalidArgumentError(absl::StrCat(what, ": format is '", format, "', not ", kFormat));
  ASSIGN_OR_RETURN(std::string version, get("format_version"));
  int v = 0;
  if (!absl::SimpleAtoi(version, &v) || v < 1) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": bad format_version '", version, "'"));
  }
  if (v > kRouterFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": made by a newer skillpack (router format_version ", v, " > ", kRouterFormatVersion, ")"));
  }
  ASSIGN_OR_RETURN(std::string cfg_text, get("config"));
  ASSIGN_OR_RETURN(Json cfg, ParseJson(cfg_text, absl::StrCat(what, ": config")));
  RouterConfig c;
  std::string ctx = absl::StrCat(what, ": config");
  ASSIGN_OR_RETURN(Json labels, GetField<Json>(cfg, "labels", ctx));
  if (!labels.is_array()) return absl::InvalidArgumentError(absl::StrCat(ctx, ": labels must be a list"));
  for (const Json& l : labels) {
    if (!l.is_string()) return absl::InvalidArgumentError(absl::StrCat(ctx, ": labels must be strings"));
    c.labels.push_back(l.get<std::string>());
  }
  ASSIGN_OR_RETURN(c.layer, GetField<int64_t>(cfg, "layer", ctx));
  ASSIGN_OR_RETURN(c.hidden_size, GetField<int64_t>(cfg, "hidden_size", ctx));
  ASSIGN_OR_RETURN(c.width, GetField<int64_t>(cfg, "width", ctx));
  ASSIGN_OR_RETURN(c.base_fingerprint, GetFieldOr<std::string>(cfg, "base_fingerprint", "", ctx));
  if (cfg.contains("assignment")) {
    ASSIGN_OR_RETURN(c.assignment, ParseModuleAssignment(cfg["assignment"], absl::StrCat(ctx, ": assignment")));
  }
  if (cfg.contains("layers")) {
    const Json& layers = cfg["layers"];
    if (!layers.is_array() || layers.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": layers must be a non-empty list of integers"));
    }
    for (const Json& l : layers) {
      if (!l.is_number_integer()) return absl::InvalidArgumentError(absl::StrCat(ctx, ": layers must be integers"));
      c.layers.push_back(l.get<int64_t>());
    }
  }
  if (cfg.contains("pooling")) {
    const Json& pooling = cfg["pooling"];
    if (!pooling.is_array() || pooling.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": pooling must be a non-empty list of names"));
    }
    for (const Json& p : pooling) {
      if (!p.is_string()) return absl::InvalidArgumentError(absl::StrCat(ctx, ": pooling must be names"));
      StatusOr<Pooling> kind = ParsePooling(p.get<std::string>());
      if (!kind.ok()) return Annotate(kind.status(), ctx);
      c.pooling.push_back(*kind);
    }
  }
  ASSIGN_OR_RETURN(c.lexicon, GetFieldOr<std::string>(cfg, "lexicon", "", ctx));
  std::vector<at::Tensor> t;
  for (const char* name : {"feature_mean", "feature_std", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
    ASSIGN_OR_RETURN(TensorView view, file->Get(name));
    if (view.dtype != DType::kF32)
      return absl::InvalidArgumentError(absl::StrCat(what, ": tensor ", name, " must be F32"));
    ASSIGN_OR_RETURN(at::Tensor x, TensorFromView(view, at::kFloat));
    t.push_back(x);
  }
  if (file->tensors().size() != 6) return absl::InvalidArgumentError(absl::StrCat(what, ": unexpected extra tensors"));
  auto r = Create(std::move(c), t[0], t[1], t[2], t[3], t[4], t[5]);
  if (!r.ok()) return Annotate(r.status(), what);
  return r;
}

StatusOr<std::unique_ptr<Router>> Router::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return Parse(std::move(bytes), path);
}

}  // namespace skillpack
