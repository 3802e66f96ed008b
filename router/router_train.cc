#include "router/router_train.h"

#include <algorithm>
#include <random>
#include <sstream>

#include <torch/torch.h>

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
    if (p.prompt.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty prompt"));
    if (p.label.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty label"));
    out.push_back(std::move(p));
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no labelled prompts"));
  return out;
}

StatusOr<RouterTrainResult> TrainRouter(const Transformer& model, const ModelWeights& base, const Tokenizer& tokenizer,
                                        const std::vector<LabelledPrompt>& data, const RouterTrainOptions& o) {
  if (!(o.holdout_fraction >= 0 && o.holdout_fraction < 1)) {
    return absl::InvalidArgumentError("holdout_fraction must be in [0, 1)");
  }
  if (o.epochs <= 0 || o.width <= 0 || !(o.learning_rate > 0)) {
    return absl::InvalidArgumentError("epochs, width and learning_rate must be positive");
  }
  // Labels: "none" first, then packs in sorted order.
  std::vector<std::string> labels = {kRouterNoneLabel};
  std::map<std::string, int64_t> index;
  for (const auto& p : data) index[p.label] = 0;
  for (auto& [name, i] : index) {
    if (name != kRouterNoneLabel) labels.push_back(name);
  }
  for (size_t i = 0; i < labels.size(); ++i) index[labels[i]] = static_cast<int64_t>(i);
  if (labels.size() < 2) return absl::InvalidArgumentError("training data names no pack (only \"none\")");

  // Stratified split.
  std::mt19937_64 rng(o.seed);
  std::map<int64_t, std::vector<size_t>> by_label;
  for (size_t i = 0; i < data.size(); ++i) by_label[index[data[i].label]].push_back(i);
  std::vector<size_t> train, held;
  for (auto& [label, idx] : by_label) {
    std::shuffle(idx.begin(), idx.end(), rng);
    size_t n_held = static_cast<size_t>(o.holdout_fraction * idx.size() + 0.5);
    if (n_held >= idx.size()) n_held = idx.size() - 1;
    held.insert(held.end(), idx.begin(), idx.begin() + n_held);
    train.insert(train.end(), idx.begin() + n_held, idx.end());
  }
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : data) prompts.push_back(tokenizer.Encode(p.prompt, true, tokenizer.bos_id().has_value()));
  ASSIGN_OR_RETURN(at::Tensor feats, PromptFeatures(model, base, prompts, o.layer));
  std::vector<int64_t> y_all;
  for (const auto& p : data) y_all.push_back(index[p.label]);

  auto pick = [&](const std::vector<size_t>& idx) {
    std::vector<int64_t> i64(idx.begin(), idx.end());
    at::Tensor ii = torch::tensor(i64, torch::kLong);
    return std::make_pair(feats.index_select(0, ii), torch::tensor(y_all, torch::kLong).index_select(0, ii));
  };
  auto [x_train, y_train] = pick(train);
  RouterTrainResult result;
  try {
    torch::manual_seed(o.seed);
    at::Tensor mean = x_train.mean(0);
    at::Tensor std = x_train.std(0, /*unbiased=*/false).clamp_min(1e-6);
    const int64_t H = feats.size(1), L = static_cast<int64_t>(labels.size());
    torch::nn::Linear fc1(H, o.width), fc2(o.width, L);
    std::vector<at::Tensor> params = fc1->parameters();
    for (auto& p : fc2->parameters()) params.push_back(p);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.learning_rate).weight_decay(o.weight_decay));
    at::Tensor xn = (x_train - mean) / std;
    // Balance classes: general prompts usually outnumber each pack's.
    at::Tensor counts = torch::bincount(y_train, {}, L).to(torch::kFloat).clamp_min(1);
    at::Tensor class_w = (counts.sum() / (counts * L));
    for (int64_t e = 0; e < o.epochs; ++e) {
      opt.zero_grad();
      at::Tensor logits = fc2->forward(torch::gelu(fc1->forward(xn)));
      at::Tensor loss = torch::nn::functional::cross_entropy(
          logits, y_train, torch::nn::functional::CrossEntropyFuncOptions().weight(class_w));
      loss.backward();
      opt.step();
    }
    torch::NoGradGuard ng;
    ASSIGN_OR_RETURN(result.router,
                     Router::Create(RouterConfig{labels, o.layer, H, o.width, o.base_fingerprint, o.assignment}, mean,
                                    std, fc1->weight, fc1->bias, fc2->weight, fc2->bias));
    auto accuracy = [&](const std::vector<size_t>& idx, bool record) {
      if (idx.empty()) return 0.0;
      auto [x, y] = pick(idx);
      at::Tensor pred = result.router->Scores(x).argmax(1);
      if (record) {
        for (int64_t i = 0; i < y.size(0); ++i) {
          result.confusion[labels[y[i].item<int64_t>()]][labels[pred[i].item<int64_t>()]]++;
        }
      }
      return pred.eq(y).to(torch::kFloat).mean().item<double>();
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
