// What routing is, without tensors: the router's labels and configuration,
// routing policies, and how a row of scores becomes packs with weights. The
// learned classifier itself is router.h.
#ifndef SKILLPACK_ROUTER_POLICY_H_
#define SKILLPACK_ROUTER_POLICY_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"
#include "pack/assignment.h"

namespace skillpack {

// Version 2 adds the optional module assignment, version 3 features from
// several layers and poolings, version 4 the surprisal pooling, version 5 the
// surprisal profile, version 6 the lexical block, version 7 its maximum over
// the words (lexicon_max); a file is written with the lowest version that
// holds what it uses, so older readers keep reading what they can.
inline constexpr int kRouterFormatVersion = 7;
inline constexpr char kRouterNoneLabel[] = "none";

// How a prompt's hidden states [T, hidden] become one vector of a feature
// block: the mean or the elementwise max over its tokens, its last token, or
// (kSurprisal) the mean weighted towards the tokens the base model predicted
// worst: token t >= 1 gets weight softmax over t of s_t / kSurprisalTemperature,
// s_t = -ln p(token t | tokens before it) under the whole base model, token 0
// weight 0 (a one-token prompt: weight 1). It reads what the prompt is
// *about* where the wording is familiar and the argument is not (a string
// to reverse, digits to sort), so a new phrasing of a known task still lands
// on its argument; it costs one forward pass of the whole base per prompt.
// kSurprisalProfile pools no hidden states: it is kSurprisalProfileSize
// numbers about the surprisals s_1..s_{n-1} themselves, which the softmax of
// kSurprisal normalises away: their mean, their maximum, and for w = 2, 3, 4
// the largest minimum over any w consecutive tokens (how unpredictable the
// prompt's least predictable stretch is: high for a random argument, low
// for a rare but well-formed word; fewer than w surprisals: their minimum).
// A one-token prompt's profile is all zeros. The same forward pass as
// kSurprisal, shared when both are used.
// kLexicon pools no hidden states either: it is the prompt text's lexical
// block (router/lexicon.h: kLexiconFeatureSize values, the mean over its
// words of what a lexical database, WordNet, says they mean), so a new
// wording of a task shares features with the wordings the router was
// trained on where the database links their words. It needs the prompt's
// text and the lexicon the router was trained with (RouterConfig::lexicon).
// kLexiconMax is the same block with each value's maximum over the words
// instead of their mean (Lexicon::Combine::kMax): a word that names the task
// counts as much in a long request told inside a situation as in a short
// one. The lexical blocks come last, kLexicon's before kLexiconMax's.
enum class Pooling { kMean, kMax, kLast, kSurprisal, kSurprisalProfile, kLexicon, kLexiconMax };
// In nats: a token 1 nat more surprising than another gets e^2 ≈ 7.4× its weight.
inline constexpr double kSurprisalTemperature = 0.5;
inline constexpr int64_t kSurprisalProfileSize = 5;
// "mean" / "max" / "last" / "surprisal" / "surprisal_profile" / "lexicon" / "lexicon_max"
const char* PoolingName(Pooling p);
// True when `pooling` lists `kind`.
bool HasPooling(const std::vector<Pooling>& pooling, Pooling kind);
// True for kLexicon and kLexiconMax, the lexical blocks.
inline bool IsLexical(Pooling p) { return p == Pooling::kLexicon || p == Pooling::kLexiconMax; }
// True when `pooling` lists a lexical block: the features need the prompts'
// texts and a lexicon.
bool ReadsLexicon(const std::vector<Pooling>& pooling);
// False for kSurprisalProfile and the lexical blocks, the kinds that are not blocks of hidden states.
inline bool PoolsHiddenStates(Pooling p) { return p != Pooling::kSurprisalProfile && !IsLexical(p); }
// The size of the features from `num_layers` layers and `pooling`:
// hidden_size x num_layers x |poolings of hidden states| (+
// kSurprisalProfileSize with the profile, + kLexiconFeatureSize per
// lexical block).
int64_t RouterFeatureSize(int64_t hidden_size, size_t num_layers, const std::vector<Pooling>& pooling);
// INVALID_ARGUMENT naming the accepted names for anything else.
StatusOr<Pooling> ParsePooling(absl::string_view name);
// "mean,max" -> {kMean, kMax}; duplicates and empty lists are refused.
StatusOr<std::vector<Pooling>> ParsePoolingList(absl::string_view list);

struct RouterConfig {
  std::vector<std::string> labels;  // labels[0] == "none"
  int64_t layer = 1;                // the deepest layer the features read (= layers.back())
  int64_t hidden_size = 0;          // the base model's hidden size
  int64_t width = 128;              // MLP hidden width
  std::string base_fingerprint;     // of the base the features come from
  // Optional (the paper's R, explicit): each pack's modules when packs are
  // composed (pack/assignment.h). When set, every pack label must have an
  // entry, and the packs a route picks each get weight 1 on their own modules.
  ModuleAssignment assignment;
  // The features: hidden states after each of `layers` decoder layers
  // (strictly ascending; empty = {layer}), each pooled by every one of
  // `pooling` (empty = {mean}); one block of hidden_size values per (layer,
  // pooling), layers outer, then the surprisal profile (once, whatever the
  // layers) when pooling lists it. Router::Create fills the defaults in.
  std::vector<int64_t> layers;
  std::vector<Pooling> pooling;
  // With a lexical block (kLexicon, kLexiconMax): the fingerprint (Lexicon::fingerprint) of the lexical
  // database the router was trained with; features are refused under
  // another. Empty otherwise.
  std::string lexicon;

  // RouterFeatureSize of these features, after Create.
  int64_t FeatureSize() const;
  // True for the version 1 features: mean pooling at one layer.
  bool SingleMeanFeatures() const { return layers.size() == 1 && pooling == std::vector<Pooling>{Pooling::kMean}; }
};

// How scores become packs (scores are a softmax over "none" and the packs).
//  - top1: the best label, when it is a pack whose score is >= threshold.
//  - topk: the k best packs, less those scoring under threshold/2 × the best
//    pack's score, are used when their scores together reach threshold
//    (several packs share the mass: with softmax scores no two packs can each
//    reach 0.5, so the threshold applies to the chosen set). Threshold 0 is
//    plain top-k.
struct RoutingPolicy {
  enum class Mode { kTop1, kTopK };
  Mode mode = Mode::kTop1;
  int32_t k = 2;           // kTopK: at most k packs
  float threshold = 0.5f;  // top1: the pack's score; topk: the chosen packs' total score
};
StatusOr<RoutingPolicy> ParseRoutingPolicy(absl::string_view mode, int32_t k, float threshold);

struct RouteDecision {
  // Chosen packs; weights sum to 1, or are all 1 under a module assignment.
  std::vector<std::pair<std::string, float>> packs;
  // Empty without a module assignment; else parallel to packs: each pack's
  // module filter (pack/selection.h) from the router's assignment.
  std::vector<std::vector<std::string>> modules;
  std::vector<std::pair<std::string, float>> scores;  // every label's score, descending
};

// Applies `policy` to one row of scores (probabilities over cfg labels).
RouteDecision DecideRoute(const std::vector<float>& scores, const std::vector<std::string>& labels,
                          const RoutingPolicy& policy);

// Gives each chosen pack its modules from `assignment` and weight 1 (disjoint
// modules: no pack is diluted by another). No-op for an empty assignment.
// REQUIRES: every pack of `d` has an entry (Router::Create checks the labels).
void ApplyRouterAssignment(const ModuleAssignment& assignment, RouteDecision* d);

}  // namespace skillpack

#endif  // SKILLPACK_ROUTER_POLICY_H_
