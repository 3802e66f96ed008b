#include "trainer/sft.h"

#include <ATen/ATen.h>
#include <ATen/core/Reduction.h>
#include <ATen/core/grad_mode.h>

namespace skillpack {
namespace {

// Summed cross-entropy of the batch's target tokens.
at::Tensor SummedTargetLoss(const Transformer& model, const ModelWeights& w, const TokenBatch& b) {
  at::Tensor logits = model.Forward(w, b.tokens, b.attention_mask);  // [B, T, V]
  const int64_t V = logits.size(-1), T = logits.size(1);
  at::Tensor pred = logits.narrow(1, 0, T - 1).reshape({-1, V});
  return at::cross_entropy_loss(pred, b.targets.reshape({-1}), {}, at::Reduction::Sum, -100);
}

}  // namespace

SftObjective::SftObjective(const Transformer& model, std::vector<TokenizedSequence> sequences)
    : model_(model), seqs_(std::move(sequences)) {}

double SftObjective::Units(const std::vector<int64_t>& examples) const { return ResponseTokens(seqs_, examples); }

StatusOr<MicroBatchLoss> SftObjective::Loss(const ModelWeights& weights, const std::vector<int64_t>& examples,
                                            double normaliser) {
  try {
    TokenBatch b = MakeTokenBatch(seqs_, examples);
    at::Tensor sum = SummedTargetLoss(model_, weights, b);
    MicroBatchLoss out;
    out.loss = sum / normaliser;
    out.sums["loss"] = sum.item<double>();
    out.tokens = b.attention_mask.sum().item<int64_t>();
    return out;
  } catch (const std::exception& e) {
    return StatusFromException(e, "SFT loss");
  }
}

StatusOr<double> ResponseLoss(const Transformer& model, const ModelWeights& weights,
                              const std::vector<TokenizedSequence>& sequences, int64_t batch_size) {
  if (sequences.empty()) return absl::InvalidArgumentError("no sequences to score");
  try {
    at::NoGradGuard no_grad;
    double total = 0, count = 0;
    for (size_t i = 0; i < sequences.size(); i += static_cast<size_t>(batch_size)) {
      std::vector<const TokenizedSequence*> batch;
      for (size_t j = i; j < std::min(sequences.size(), i + static_cast<size_t>(batch_size)); ++j) {
        batch.push_back(&sequences[j]);
      }
      TokenBatch b = MakeTokenBatch(batch);
      total += SummedTargetLoss(model, weights, b).item<double>();
      count += static_cast<double>(b.num_target_tokens);
    }
    return total / std::max(1.0, count);
  } catch (const std::exception& e) {
    return StatusFromException(e, "scoring response loss");
  }
}

}  // namespace skillpack
