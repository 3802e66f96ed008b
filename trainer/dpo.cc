#include "trainer/dpo.h"

#include <algorithm>
#include <optional>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

namespace skillpack {
namespace {

// Batch of the pairs' chosen sequences followed by their rejected ones.
TokenBatch PairBatch(const std::vector<const TokenizedPair*>& pairs) {
  std::vector<const TokenizedSequence*> seqs;
  for (const TokenizedPair* p : pairs) seqs.push_back(&p->chosen);
  for (const TokenizedPair* p : pairs) seqs.push_back(&p->rejected);
  return MakeTokenBatch(seqs);
}

}  // namespace

ResponseLogProbSums ResponseLogProbTotals(const Transformer& model, const ModelWeights& weights,
                                          const TokenBatch& batch) {
  at::Tensor logits = model.Forward(weights, batch.tokens, batch.attention_mask);
  const int64_t T = logits.size(1);
  at::Tensor logp = at::log_softmax(logits.narrow(1, 0, T - 1), -1);  // [B, T-1, V]
  at::Tensor valid = batch.targets.ne(-100);
  at::Tensor idx = batch.targets.clamp_min(0).unsqueeze(-1);
  at::Tensor picked = logp.gather(-1, idx).squeeze(-1) * valid.to(logp.scalar_type());
  return {picked.sum(-1), valid.sum(-1).clamp_min(1).to(logp.scalar_type())};
}

at::Tensor ResponseLogProbs(const Transformer& model, const ModelWeights& weights, const TokenBatch& batch, bool mean) {
  ResponseLogProbSums t = ResponseLogProbTotals(model, weights, batch);
  return mean ? t.Mean() : t.sum;
}

TokenizedPair FirstDifference(const TokenizedPair& pair) {
  const std::vector<int32_t>& c = pair.chosen.tokens;
  const std::vector<int32_t>& r = pair.rejected.tokens;
  const int64_t p = pair.chosen.prompt_len;
  if (p != pair.rejected.prompt_len || p <= 0 || !std::equal(c.begin(), c.begin() + p, r.begin())) return pair;
  const int64_t n = static_cast<int64_t>(std::min(c.size(), r.size()));
  int64_t k = p;
  while (k < n && c[k] == r[k]) ++k;
  // Equal responses, or one a prefix of the other (cut at max_len: every
  // whole response ends with the end token): no differing token to keep.
  if (k == n) return pair;
  TokenizedPair out;
  out.chosen.tokens.assign(c.begin(), c.begin() + k + 1);
  out.rejected.tokens.assign(r.begin(), r.begin() + k + 1);
  out.chosen.prompt_len = out.rejected.prompt_len = k;
  return out;
}

DpoObjective::DpoObjective(const Transformer& model, std::shared_ptr<const ModelWeights> reference,
                           std::vector<TokenizedPair> pairs, DpoConfig config)
    : model_(model),
      reference_(std::move(reference)),
      pairs_(std::move(pairs)),
      config_(config),
      ref_chosen_(pairs_.size()),
      ref_rejected_(pairs_.size()),
      ref_known_(pairs_.size(), false) {
  if (config_.first_difference) {
    for (const TokenizedPair& p : pairs_) focused_.push_back(FirstDifference(p));
  }
}

std::vector<std::string> DpoObjective::MetricNames() const {
  return {"loss", "reward_margin", "reward_accuracy", "chosen_reward", "rejected_reward", "chosen_nll"};
}

StatusOr<MicroBatchLoss> DpoObjective::Loss(const ModelWeights& weights, const std::vector<int64_t>& examples,
                                            double normaliser) {
  try {
    const int64_t B = static_cast<int64_t>(examples.size());
    // The preference term's pairs: whole, or cut at their first difference.
    const std::vector<TokenizedPair>& pref = config_.first_difference ? focused_ : pairs_;
    std::vector<const TokenizedPair*> batch;
    std::vector<const TokenizedPair*> missing;
    std::vector<int64_t> missing_idx;
    for (int64_t i : examples) {
      batch.push_back(&pref[i]);
      if (!ref_known_[i]) {
        missing.push_back(&pref[i]);
        missing_idx.push_back(i);
      }
    }
    if (!missing.empty()) {
      at::NoGradGuard no_grad;
      at::Tensor ref = ResponseLogProbs(model_, *reference_, PairBatch(missing), config_.length_normalize);
      const int64_t M = static_cast<int64_t>(missing.size());
      for (int64_t j = 0; j < M; ++j) {
        ref_chosen_[missing_idx[j]] = ref[j].item<double>();
        ref_rejected_[missing_idx[j]] = ref[M + j].item<double>();
        ref_known_[missing_idx[j]] = true;
      }
    }
    std::vector<double> rc, rr;
    for (int64_t i : examples) {
      rc.push_back(ref_chosen_[i]);
      rr.push_back(ref_rejected_[i]);
    }
    TokenBatch b = PairBatch(batch);
    ResponseLogProbSums totals = ResponseLogProbTotals(model_, weights, b);
    at::Tensor policy = config_.length_normalize ? totals.Mean() : totals.sum;
    at::Tensor chosen_nll;
    int64_t extra_tokens = 0;  // the whole chosen responses' pass, with first_difference
    if (!config_.first_difference) {
      chosen_nll = -totals.Mean().narrow(0, 0, B);
    } else {
      // The whole chosen responses, in a pass of their own (with grad only when trained on).
      std::vector<const TokenizedSequence*> whole;
      for (int64_t i : examples) whole.push_back(&pairs_[i].chosen);
      std::optional<at::NoGradGuard> no_grad;
      if (config_.sft_weight <= 0) no_grad.emplace();
      TokenBatch wb = MakeTokenBatch(whole);
      chosen_nll = -ResponseLogProbs(model_, weights, wb, true);
      extra_tokens = wb.attention_mask.sum().item<int64_t>();
    }
    at::Tensor chosen = config_.beta * (policy.narrow(0, 0, B) - at::tensor(rc, policy.options()));
    at::Tensor rejected = config_.beta * (policy.narrow(0, B, B) - at::tensor(rr, policy.options()));
    at::Tensor margin = chosen - rejected;
    // DPOP: the margin the loss reads drops by lambda * max(0, -r(y+)).
    at::Tensor losses =
        -at::log_sigmoid(config_.dpop_lambda > 0 ? margin - config_.dpop_lambda * at::relu(-chosen) : margin);
    if (config_.sft_weight > 0) losses = losses + config_.sft_weight * chosen_nll;
    MicroBatchLoss out;
    out.loss = losses.sum() / normaliser;
    out.sums["loss"] = losses.sum().item<double>();
    out.sums["reward_margin"] = margin.sum().item<double>();
    out.sums["reward_accuracy"] = margin.gt(0).sum().item<double>();
    out.sums["chosen_reward"] = chosen.sum().item<double>();
    out.sums["rejected_reward"] = rejected.sum().item<double>();
    out.sums["chosen_nll"] = chosen_nll.sum().item<double>();
    out.tokens = b.attention_mask.sum().item<int64_t>() + extra_tokens;
    return out;
  } catch (const std::exception& e) {
    return StatusFromException(e, "DPO loss");
  }
}

Json PreferenceMetricsToJson(const PreferenceMetrics& m) {
  return Json{{"pairs", m.pairs},
              {"loss", m.loss},
              {"reward_margin", m.reward_margin},
              {"reward_accuracy", m.reward_accuracy},
              {"logp_margin", m.logp_margin},
              {"logp_accuracy", m.logp_accuracy}};
}

StatusOr<PreferenceMetrics> EvaluatePreferences(const Transformer& model, const ModelWeights& policy,
                                                const ModelWeights& reference, const std::vector<TokenizedPair>& pairs,
                                                const DpoConfig& config, int64_t batch_size) {
  if (pairs.empty()) return absl::InvalidArgumentError("no preference pairs to evaluate");
  PreferenceMetrics m;
  try {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < pairs.size(); i += static_cast<size_t>(batch_size)) {
      std::vector<const TokenizedPair*> batch;
      for (size_t j = i; j < std::min(pairs.size(), i + static_cast<size_t>(batch_size)); ++j) {
        batch.push_back(&pairs[j]);
      }
      const int64_t B = static_cast<int64_t>(batch.size());
      TokenBatch b = PairBatch(batch);
      at::Tensor pol = ResponseLogProbs(model, policy, b, config.length_normalize).to(at::kDouble);
      at::Tensor ref = ResponseLogProbs(model, reference, b, config.length_normalize).to(at::kDouble);
      at::Tensor pc = pol.narrow(0, 0, B), pr = pol.narrow(0, B, B);
      at::Tensor margin = config.beta * ((pc - ref.narrow(0, 0, B)) - (pr - ref.narrow(0, B, B)));
      m.loss += (-at::log_sigmoid(margin)).sum().item<double>();
      m.reward_margin += margin.sum().item<double>();
      m.reward_accuracy += margin.gt(0).sum().item<double>();
      m.logp_margin += (pc - pr).sum().item<double>();
      m.logp_accuracy += (pc - pr).gt(0).sum().item<double>();
      m.pairs += B;
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "evaluating preferences");
  }
  const double n = static_cast<double>(m.pairs);
  m.loss /= n;
  m.reward_margin /= n;
  m.reward_accuracy /= n;
  m.logp_margin /= n;
  m.logp_accuracy /= n;
  return m;
}

}  // namespace skillpack
