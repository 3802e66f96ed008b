#include "router/router_train.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <sstream>

#include <torch/torch.h>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/json_util.h"

namespace skillpack {

StatusOr<std::vector<LabelledPrompt>> ReadLabelledPrompts(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<LabelledPrompt> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    std::string where = absl::StrCat(path, ":", line_no);
    ASSIGN_OR_RETURN(Json j, ParseJson(line, where));
    LabelledPrompt p;
    if (j.is_object() && j.contains("text")) {
      ASSIGN_OR_RETURN(p.prompt, GetField<std::string>(j, "text", where));
    } else {
      ASSIGN_OR_RETURN(p.prompt, GetField<std::string>(j, "prompt", where));
    }
    ASSIGN_OR_RETURN(p.label, GetField<std::string>(j, "label", where));
    ASSIGN_OR_RETURN(p.group, GetFieldOr<std::string>(j, "group", "", where));
    if (p.prompt.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty prompt"));
    if (p.label.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty label"));
    out.push_back(std::move(p));
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no labelled prompts"));
  return out;
}

std::vector<LabelledPrompt> AugmentPrompts(const std::vector<LabelledPrompt>& data, const RouterAugmentOptions& o,
                                           uint64_t seed) {
  static const char* const kFillers[] = {"please", "now",  "quickly", "hey",    "ok",
                                         "so",     "then", "just",    "kindly", "well"};
  std::mt19937_64 rng(seed ^ 0x5851f42d4c957f2dull);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<LabelledPrompt> out;
  for (const LabelledPrompt& p : data) {
    const std::vector<std::string> words = absl::StrSplit(p.prompt, ' ', absl::SkipEmpty());
    for (int64_t c = 0; c < o.copies; ++c) {
      std::vector<std::string> kept;
      for (const std::string& w : words) {
        if (u(rng) >= o.word_dropout) kept.push_back(w);
        if (u(rng) < o.filler) kept.push_back(kFillers[rng() % (sizeof(kFillers) / sizeof(kFillers[0]))]);
      }
      if (kept.empty() && !words.empty()) kept.push_back(words[rng() % words.size()]);
      std::string text = absl::StrJoin(kept, " ");
      if (u(rng) < o.case_change) {
        const uint64_t kind = rng() % 3;
        bool word_start = true;
        for (char& ch : text) {
          const bool upper = kind == 1 || (kind == 2 && word_start);
          if (ch >= 'a' && ch <= 'z' && upper) ch = static_cast<char>(ch - 'a' + 'A');
          if (ch >= 'A' && ch <= 'Z' && !upper) ch = static_cast<char>(ch - 'A' + 'a');
          word_start = ch == ' ';
        }
      }
      if (text.empty()) text = p.prompt;
      out.push_back({std::move(text), p.label, p.group});
    }
  }
  return out;
}

namespace {

// Labels: "none" first, then packs in sorted order; y: each prompt's label index.
StatusOr<std::vector<std::string>> MakeLabels(const std::vector<LabelledPrompt>& data, std::vector<int64_t>* y) {
  std::vector<std::string> labels = {kRouterNoneLabel};
  std::map<std::string, int64_t> index;
  for (const auto& p : data) index[p.label] = 0;
  for (auto& [name, i] : index) {
    if (name != kRouterNoneLabel) labels.push_back(name);
  }
  for (size_t i = 0; i < labels.size(); ++i) index[labels[i]] = static_cast<int64_t>(i);
  if (labels.size() < 2) return absl::InvalidArgumentError("training data names no pack (only \"none\")");
  y->clear();
  for (const auto& p : data) y->push_back(index[p.label]);
  return labels;
}

// The units a label's prompts are split by: its groups when it has two or
// more, else each prompt alone. With `split_keys` a group is each of the
// '|'-separated keys of LabelledPrompt::group (a prompt with several keys is
// in several units). Returns, per label, units of prompt indices in a seeded
// order.
std::map<int64_t, std::vector<std::vector<size_t>>> SplitUnits(const std::vector<LabelledPrompt>& data,
                                                               const std::vector<int64_t>& y, bool by_group,
                                                               uint64_t seed, bool split_keys = false) {
  std::map<int64_t, std::map<std::string, std::vector<size_t>>> groups;
  for (size_t i = 0; i < data.size(); ++i) {
    if (!split_keys) {
      groups[y[i]][data[i].group].push_back(i);
      continue;
    }
    for (absl::string_view key : absl::StrSplit(data[i].group, '|')) groups[y[i]][std::string(key)].push_back(i);
  }
  std::mt19937_64 rng(seed);
  std::map<int64_t, std::vector<std::vector<size_t>>> units;
  for (auto& [label, by_name] : groups) {
    std::vector<std::vector<size_t>>& u = units[label];
    if (by_group && by_name.size() >= 2) {
      for (auto& [name, idx] : by_name) u.push_back(idx);
    } else {
      for (auto& [name, idx] : by_name) {
        for (size_t i : idx) u.push_back({i});
      }
      std::sort(u.begin(), u.end());
      u.erase(std::unique(u.begin(), u.end()), u.end());  // a prompt named by two keys
    }
    std::shuffle(u.begin(), u.end(), rng);
  }
  return units;
}

std::vector<int64_t> FeatureLayers(const RouterTrainOptions& o) {
  return o.layers.empty() ? std::vector<int64_t>{o.layer} : o.layers;
}
std::vector<Pooling> FeaturePooling(const RouterTrainOptions& o) {
  return o.pooling.empty() ? std::vector<Pooling>{Pooling::kMean} : o.pooling;
}

struct Mlp {
  at::Tensor mean, std, w1, b1, w2, b2;
};

// Standardises x by its own statistics (each feature by its own mean and
// standard deviation, but each lexical block (Pooling::kLexicon, kLexiconMax) by one
// standard deviation for all its values: a sparse bucket that training
// hardly ever fills would otherwise turn one new word in it into a huge
// standardised value) and trains the MLP full batch with
// AdamW and class-balanced cross-entropy, calling `checkpoint` (epoch, MLP)
// after each epoch listed in `checkpoints` (ascending) and returning the
// MLP after the last one.
StatusOr<Mlp> FitMlp(const at::Tensor& x, const at::Tensor& y, int64_t labels, const RouterTrainOptions& o,
                     const std::vector<int64_t>& checkpoints,
                     const std::function<void(int64_t, const Mlp&)>& checkpoint) {
  try {
    torch::manual_seed(o.seed);
    Mlp m;
    m.mean = x.mean(0);
    m.std = x.std(0, /*unbiased=*/false);
    const int64_t H = x.size(1);
    const std::vector<Pooling> pooling = FeaturePooling(o);
    // The lexical blocks come last (policy.h), each standardised on its own.
    const int64_t lexical = std::count_if(pooling.begin(), pooling.end(), IsLexical);
    for (int64_t i = 1; i <= lexical; ++i) {
      at::Tensor block = m.std.narrow(0, H - i * kLexiconFeatureSize, kLexiconFeatureSize);
      block.fill_(block.square().mean().sqrt().item<float>());
    }
    m.std = m.std.clamp_min(1e-6);
    torch::nn::Linear fc1(H, o.width), fc2(o.width, labels);
    std::vector<at::Tensor> params = fc1->parameters();
    for (auto& p : fc2->parameters()) params.push_back(p);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.learning_rate).weight_decay(o.weight_decay));
    at::Tensor xn = (x - m.mean) / m.std;
    // Balance classes: general prompts usually outnumber each pack's.
    at::Tensor counts = torch::bincount(y, {}, labels).to(torch::kFloat).clamp_min(1);
    at::Tensor class_w = (counts.sum() / (counts * labels));
    size_t next = 0;
    const int64_t last = checkpoints.empty() ? 0 : checkpoints.back();
    for (int64_t e = 1; e <= last; ++e) {
      opt.zero_grad();
      at::Tensor h = torch::gelu(fc1->forward(xn));
      if (o.dropout > 0) h = torch::dropout(h, o.dropout, /*train=*/true);
      at::Tensor logits = fc2->forward(h);
      at::Tensor loss = torch::nn::functional::cross_entropy(
          logits, y, torch::nn::functional::CrossEntropyFuncOptions().weight(class_w));
      loss.backward();
      opt.step();
      if (next < checkpoints.size() && checkpoints[next] == e) {
        torch::NoGradGuard ng;
        m.w1 = fc1->weight.detach().clone(), m.b1 = fc1->bias.detach().clone();
        m.w2 = fc2->weight.detach().clone(), m.b2 = fc2->bias.detach().clone();
        if (checkpoint) checkpoint(e, m);
        ++next;
      }
    }
    return m;
  } catch (const std::exception& e) {
    return StatusFromException(e, "training router");
  }
}

// One MLP whose logits are the mean of `members`' (all standardised by the
// same statistics: trained on the same features): fc1's rows stacked, fc2's
// columns stacked and divided by the members' count, fc2's biases averaged.
Mlp FoldMembers(const std::vector<Mlp>& members) {
  if (members.size() == 1) return members[0];
  const double k = static_cast<double>(members.size());
  std::vector<at::Tensor> w1, b1, w2, b2;
  for (const Mlp& m : members) {
    w1.push_back(m.w1), b1.push_back(m.b1), w2.push_back(m.w2), b2.push_back(m.b2);
  }
  Mlp out;
  out.mean = members[0].mean, out.std = members[0].std;
  out.w1 = at::cat(w1, 0), out.b1 = at::cat(b1, 0);
  out.w2 = at::cat(w2, 1) / k, out.b2 = at::stack(b2).mean(0);
  return out;
}

// FitMlp for each of o.ensemble members (member k seeded o.seed + k x a
// constant), `checkpoint` called with the members folded (FoldMembers) at
// each listed epoch; returns the folded MLP after the last and, when
// `members` is given, each member's.
StatusOr<Mlp> FitEnsemble(const at::Tensor& x, const at::Tensor& y, int64_t labels, const RouterTrainOptions& o,
                          const std::vector<int64_t>& checkpoints,
                          const std::function<void(int64_t, const Mlp&)>& checkpoint,
                          std::vector<Mlp>* members = nullptr) {
  if (o.ensemble == 1 && members == nullptr) return FitMlp(x, y, labels, o, checkpoints, checkpoint);
  std::map<int64_t, std::vector<Mlp>> at_epoch;
  std::vector<Mlp> last;
  for (int64_t k = 0; k < o.ensemble; ++k) {
    RouterTrainOptions member = o;
    member.seed = o.seed + static_cast<uint64_t>(k) * 0x9e3779b97f4a7c15ull;
    ASSIGN_OR_RETURN(Mlp m, FitMlp(x, y, labels, member, checkpoints,
                                   [&](int64_t e, const Mlp& mlp) { at_epoch[e].push_back(mlp); }));
    last.push_back(std::move(m));
  }
  if (checkpoint) {
    for (int64_t e : checkpoints) checkpoint(e, FoldMembers(at_epoch[e]));
  }
  Mlp folded = FoldMembers(last);
  if (members != nullptr) *members = std::move(last);
  return folded;
}

// Scores [N, labels] of the MLP on raw features.
at::Tensor MlpScores(const Mlp& m, const at::Tensor& x) {
  torch::NoGradGuard ng;
  at::Tensor h = at::gelu(at::linear((x - m.mean) / m.std, m.w1, m.b1));
  return at::softmax(at::linear(h, m.w2, m.b2), -1);
}

// The label each row of scores routes to under `policy` (index; 0 = none).
std::vector<int64_t> RoutedLabels(const at::Tensor& scores, const std::vector<std::string>& labels,
                                  const RoutingPolicy& policy) {
  std::vector<int64_t> out;
  at::Tensor s = scores.contiguous();
  for (int64_t i = 0; i < s.size(0); ++i) {
    const float* row = s[i].data_ptr<float>();
    RouteDecision d = DecideRoute(std::vector<float>(row, row + s.size(1)), labels, policy);
    int64_t label = 0;
    if (!d.packs.empty()) {
      label = std::find(labels.begin(), labels.end(), d.packs[0].first) - labels.begin();
    }
    out.push_back(label);
  }
  return out;
}

Status CheckOptions(const RouterTrainOptions& o) {
  if (!(o.holdout_fraction >= 0 && o.holdout_fraction < 1)) {
    return absl::InvalidArgumentError("holdout_fraction must be in [0, 1)");
  }
  if (o.epochs <= 0 || o.width <= 0 || !(o.learning_rate > 0)) {
    return absl::InvalidArgumentError("epochs, width and learning_rate must be positive");
  }
  if (!(o.dropout >= 0 && o.dropout < 1)) return absl::InvalidArgumentError("dropout must be in [0, 1)");
  if (o.ensemble < 1 || o.ensemble > 64) return absl::InvalidArgumentError("ensemble must be in [1, 64]");
  const RouterAugmentOptions& a = o.augment;
  if (a.copies < 0 || !(a.word_dropout >= 0 && a.word_dropout <= 1) || !(a.filler >= 0 && a.filler <= 1) ||
      !(a.case_change >= 0 && a.case_change <= 1)) {
    return absl::InvalidArgumentError("augment: copies must be >= 0 and probabilities in [0, 1]");
  }
  return absl::OkStatus();
}

std::vector<std::vector<int32_t>> Encode(const Tokenizer& tokenizer, const std::vector<LabelledPrompt>& data) {
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : data) prompts.push_back(tokenizer.Encode(p.prompt, true, tokenizer.bos_id().has_value()));
  return prompts;
}

// Features of labelled prompts: their tokens and, for the lexical block,
// their texts, read with Lexicon::Default() (its fingerprint into
// *lexicon_fingerprint when given).
StatusOr<at::Tensor> DataFeatures(const Transformer& model, const ModelWeights& base, const Tokenizer& tokenizer,
                                  const std::vector<LabelledPrompt>& data, const std::vector<int64_t>& layers,
                                  const std::vector<Pooling>& pooling, std::string* lexicon_fingerprint = nullptr) {
  const Lexicon* lexicon = nullptr;
  std::vector<std::string> texts;
  if (ReadsLexicon(pooling)) {
    ASSIGN_OR_RETURN(lexicon, Lexicon::Default());
    if (lexicon_fingerprint != nullptr) *lexicon_fingerprint = lexicon->fingerprint();
    for (const LabelledPrompt& p : data) texts.push_back(p.prompt);
  }
  return PromptFeatures(model, base, Encode(tokenizer, data), layers, pooling, &texts, lexicon);
}

at::Tensor Rows(const at::Tensor& t, const std::vector<size_t>& idx) {
  std::vector<int64_t> i64(idx.begin(), idx.end());
  return t.index_select(0, torch::tensor(i64, torch::kLong));
}

}  // namespace

StatusOr<RouterTrainResult> TrainRouter(const Transformer& model, const ModelWeights& base, const Tokenizer& tokenizer,
                                        const std::vector<LabelledPrompt>& data, const RouterTrainOptions& o) {
  RETURN_IF_ERROR(CheckOptions(o));
  std::vector<int64_t> y_all;
  ASSIGN_OR_RETURN(std::vector<std::string> labels, MakeLabels(data, &y_all));

  // Stratified split (by prompt or by group).
  std::vector<size_t> train, held;
  for (auto& [label, units] : SplitUnits(data, y_all, o.holdout_by_group, o.seed)) {
    size_t n_held = static_cast<size_t>(o.holdout_fraction * units.size() + 0.5);
    if (o.holdout_by_group && o.holdout_fraction > 0 && n_held == 0 && units.size() >= 2) n_held = 1;
    if (n_held >= units.size()) n_held = units.size() - 1;
    for (size_t u = 0; u < units.size(); ++u) {
      (u < n_held ? held : train).insert((u < n_held ? held : train).end(), units[u].begin(), units[u].end());
    }
  }
  std::sort(train.begin(), train.end());
  std::sort(held.begin(), held.end());
  // Augmented variants of the training prompts only, after the originals.
  std::vector<LabelledPrompt> train_data;
  for (size_t i : train) train_data.push_back(data[i]);
  std::vector<LabelledPrompt> all = data;
  std::vector<size_t> fit = train;
  const size_t copies = static_cast<size_t>(o.augment.copies);
  std::vector<LabelledPrompt> variants = AugmentPrompts(train_data, o.augment, o.seed + 1);
  for (size_t v = 0; v < variants.size(); ++v) {
    fit.push_back(all.size());
    y_all.push_back(y_all[train[v / copies]]);
    all.push_back(std::move(variants[v]));
  }
  const std::vector<int64_t> layers = FeatureLayers(o);
  const std::vector<Pooling> pooling = FeaturePooling(o);
  std::string lexicon;
  ASSIGN_OR_RETURN(at::Tensor feats, DataFeatures(model, base, tokenizer, all, layers, pooling, &lexicon));
  at::Tensor y = torch::tensor(y_all, torch::kLong);
  const int64_t L = static_cast<int64_t>(labels.size());
  std::vector<Mlp> members;
  ASSIGN_OR_RETURN(Mlp m, FitEnsemble(Rows(feats, fit), Rows(y, fit), L, o, {o.epochs}, nullptr,
                                      o.ensemble > 1 ? &members : nullptr));
  RouterTrainResult result;
  RouterConfig config{
      labels,  layers.back(), base.embed_tokens().size(1), m.w1.size(0), o.base_fingerprint, o.assignment, layers,
      pooling, lexicon};
  ASSIGN_OR_RETURN(result.router, Router::Create(config, m.mean, m.std, m.w1, m.b1, m.w2, m.b2));
  for (const Mlp& member : members) {
    config.width = member.w1.size(0);
    ASSIGN_OR_RETURN(std::unique_ptr<Router> r,
                     Router::Create(config, member.mean, member.std, member.w1, member.b1, member.w2, member.b2));
    result.members.push_back(std::move(r));
  }
  try {
    auto accuracy = [&](const std::vector<size_t>& idx, bool record) {
      if (idx.empty()) return 0.0;
      at::Tensor yy = Rows(y, idx);
      at::Tensor pred = result.router->Scores(Rows(feats, idx)).argmax(1);
      if (record) {
        for (int64_t i = 0; i < yy.size(0); ++i) {
          result.confusion[labels[yy[i].item<int64_t>()]][labels[pred[i].item<int64_t>()]]++;
        }
      }
      return pred.eq(yy).to(torch::kFloat).mean().item<double>();
    };
    result.train_accuracy = accuracy(train, false);
    result.holdout_accuracy = accuracy(held, true);
  } catch (const std::exception& e) {
    return StatusFromException(e, "training router");
  }
  result.train_examples = static_cast<int64_t>(train.size());
  result.holdout_examples = static_cast<int64_t>(held.size());
  return result;
}

std::vector<std::vector<int64_t>> SelectionFolds(const std::vector<LabelledPrompt>& data, const std::vector<int64_t>& y,
                                                 int64_t folds, uint64_t seed) {
  std::vector<std::vector<int64_t>> out(data.size());
  for (auto& [label, units] : SplitUnits(data, y, /*by_group=*/true, seed, /*split_keys=*/true)) {
    for (size_t u = 0; u < units.size(); ++u) {
      for (size_t i : units[u]) out[i].push_back(static_cast<int64_t>(u % static_cast<size_t>(folds)));
    }
  }
  for (auto& f : out) {
    std::sort(f.begin(), f.end());
    f.erase(std::unique(f.begin(), f.end()), f.end());
  }
  return out;
}

StatusOr<RouterSelection> SelectRouter(const Transformer& model, const ModelWeights& base, const Tokenizer& tokenizer,
                                       const std::vector<LabelledPrompt>& data,
                                       const std::vector<RouterCandidate>& candidates, const RouterSelectOptions& so) {
  if (candidates.empty()) return absl::InvalidArgumentError("router selection: no candidates");
  if (so.folds < 2) return absl::InvalidArgumentError("router selection: folds must be >= 2");
  if (so.epochs.empty() || so.epochs[0] < 1 || !std::is_sorted(so.epochs.begin(), so.epochs.end()) ||
      std::adjacent_find(so.epochs.begin(), so.epochs.end()) != so.epochs.end()) {
    return absl::InvalidArgumentError("router selection: epochs must be positive and strictly ascending");
  }
  std::vector<int64_t> y_orig;
  ASSIGN_OR_RETURN(std::vector<std::string> labels, MakeLabels(data, &y_orig));
  const int64_t L = static_cast<int64_t>(labels.size());
  const std::vector<std::vector<int64_t>> fold = SelectionFolds(data, y_orig, so.folds, so.seed);
  std::map<std::string, int64_t> label_index;
  for (size_t l = 0; l < labels.size(); ++l) label_index[labels[l]] = static_cast<int64_t>(l);
  RouterSelection sel;
  double best = -1, best_worst = -1;
  for (size_t ci = 0; ci < candidates.size(); ++ci) {
    const RouterCandidate& cand = candidates[ci];
    RouterTrainOptions o = cand.options;
    o.epochs = so.epochs.back();
    RETURN_IF_ERROR(Annotate(CheckOptions(o), absl::StrCat("router candidate ", cand.name)));
    // The candidate's prompts: data, then its training-only extras (no fold:
    // in every fold's training set, never validated).
    std::vector<LabelledPrompt> pool = data;
    std::vector<int64_t> pool_y = y_orig;
    std::vector<std::vector<int64_t>> pool_fold = fold;
    for (const LabelledPrompt& p : cand.extra) {
      auto it = label_index.find(p.label);
      if (it == label_index.end()) {
        return absl::InvalidArgumentError(absl::StrCat("router candidate ", cand.name, ": extra prompt label '",
                                                       p.label, "' is not a label of the training data"));
      }
      pool.push_back(p);
      pool_y.push_back(it->second);
      pool_fold.push_back({});
    }
    // Variants of every prompt; a fold trains on those of its training prompts.
    std::vector<LabelledPrompt> all = pool;
    std::vector<size_t> source(pool.size());
    for (size_t i = 0; i < pool.size(); ++i) source[i] = i;
    std::vector<LabelledPrompt> variants = AugmentPrompts(pool, o.augment, o.seed + 1);
    for (size_t v = 0; v < variants.size(); ++v) {
      source.push_back(v / static_cast<size_t>(std::max<int64_t>(1, o.augment.copies)));
      all.push_back(std::move(variants[v]));
    }
    ASSIGN_OR_RETURN(at::Tensor feats, DataFeatures(model, base, tokenizer, all, FeatureLayers(o), FeaturePooling(o)));
    std::vector<int64_t> y_all;
    for (size_t i = 0; i < all.size(); ++i) y_all.push_back(pool_y[source[i]]);
    at::Tensor y = torch::tensor(y_all, torch::kLong);
    // per epochs checkpoint: label -> (routed right, n) summed over folds
    std::map<int64_t, std::map<int64_t, std::pair<double, double>>> per;
    std::map<int64_t, double> fold_sum;
    int64_t folds_run = 0;
    for (int64_t f = 0; f < so.folds; ++f) {
      std::vector<size_t> fit, val;
      for (size_t i = 0; i < all.size(); ++i) {
        const std::vector<int64_t>& held_in = pool_fold[source[i]];
        if (std::find(held_in.begin(), held_in.end(), f) == held_in.end()) {
          fit.push_back(i);
        } else if (i < pool.size() && held_in.size() == 1) {
          val.push_back(i);
        }
      }
      if (val.empty()) continue;
      ++folds_run;
      at::Tensor xv = Rows(feats, val);
      ASSIGN_OR_RETURN(Mlp m,
                       FitEnsemble(Rows(feats, fit), Rows(y, fit), L, o, so.epochs, [&](int64_t e, const Mlp& mlp) {
                         std::vector<int64_t> got = RoutedLabels(MlpScores(mlp, xv), labels, so.policy);
                         std::map<int64_t, std::pair<double, double>> fold_counts;
                         for (size_t k = 0; k < val.size(); ++k) {
                           auto& c = fold_counts[y_orig[val[k]]];
                           c.first += got[k] == y_orig[val[k]];
                           c.second += 1;
                         }
                         double bal = 0;
                         for (auto& [label, c] : fold_counts) {
                           bal += c.first / c.second;
                           per[e][label].first += c.first;
                           per[e][label].second += c.second;
                         }
                         fold_sum[e] += bal / static_cast<double>(fold_counts.size());
                       }));
      (void)m;
    }
    for (int64_t e : so.epochs) {
      RouterCvScore s;
      s.candidate = cand.name;
      s.epochs = e;
      s.balanced_accuracy = fold_sum[e] / static_cast<double>(std::max<int64_t>(1, folds_run));
      s.worst_label = 1.0;
      for (auto& [label, c] : per[e]) {
        s.validated += static_cast<int64_t>(c.second);
        s.per_label[labels[label]] = c.first / c.second;
        s.worst_label = std::min(s.worst_label, c.first / c.second);
      }
      if (s.balanced_accuracy > best + 1e-12 ||
          (std::abs(s.balanced_accuracy - best) <= 1e-12 && s.worst_label > best_worst)) {
        best = s.balanced_accuracy;
        best_worst = s.worst_label;
        sel.best = sel.scores.size();
        sel.best_candidate = ci;
        sel.best_options = o;
        sel.best_options.epochs = e;
      }
      sel.scores.push_back(std::move(s));
    }
  }
  return sel;
}

std::string ConfusionTable(const RouterTrainResult& r) {
  const auto& labels = r.router->config().labels;
  size_t w = 8;
  for (const auto& l : labels) w = std::max(w, l.size() + 2);
  std::ostringstream os;
  os << std::string(w, ' ');
  for (const auto& l : labels) os << std::string(w - l.size(), ' ') << l;
  os << "   (rows: true label, columns: predicted)\n";
  for (const auto& t : labels) {
    os << t << std::string(w - t.size(), ' ');
    for (const auto& p : labels) {
      int64_t n = 0;
      auto it = r.confusion.find(t);
      if (it != r.confusion.end()) {
        auto jt = it->second.find(p);
        if (jt != it->second.end()) n = jt->second;
      }
      std::string s = std::to_string(n);
      os << std::string(w - s.size(), ' ') << s;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace skillpack
