#include "trainer/pack_refit.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "pack/codec/quantize.h"
#include "pack/composer.h"
#include "pack/decode.h"
#include "pack/format.h"

namespace skillpack {
namespace {

// x quantised as it will be stored: round-to-nearest at `like`'s bits and
// group size, scales rounded to fp16 where the writer stores them so (as the
// compressor does).
StatusOr<QuantizedMatrix> Requantize(const at::Tensor& x, const QuantizedMatrix& like) {
  ASSIGN_OR_RETURN(QuantizedMatrix q, QuantizeRtn(x.detach(), like.bits, like.group_size));
  RETURN_IF_ERROR(RoundScalesToHalf(&q));
  return q;
}

// x as Requantize stores it, with the gradient of the identity (straight-through).
at::Tensor Rounded(const at::Tensor& x, const QuantizedMatrix& like) {
  StatusOr<QuantizedMatrix> q = Requantize(x, like);
  if (!q.ok()) throw std::runtime_error(std::string(q.status().message()));
  return x + (Dequantize(*q) - x).detach();
}

// x rounded to float16 and back, straight-through.
at::Tensor RoundedHalf(const at::Tensor& x) { return x + (x.detach().to(at::kHalf).to(at::kFloat) - x).detach(); }

}  // namespace

StatusOr<std::unique_ptr<PackRefitWeights>> PackRefitWeights::Create(std::shared_ptr<const ModelWeights> base,
                                                                     const SkillPack& pack) {
  RETURN_IF_ERROR(Annotate(ValidateSkillPack(pack), "refit"));
  // Names and shapes only: the caller made the pack from this base.
  RETURN_IF_ERROR(Annotate(CheckPackFitsBase(pack, *base, pack.manifest.base_fingerprint), "refit"));
  std::unique_ptr<PackRefitWeights> t(new PackRefitWeights());
  t->base_ = std::move(base);
  t->pack_ = pack;
  try {
    at::NoGradGuard no_grad;
    const at::Device device = t->base_->tensors().begin()->second.device();
    auto add = [&](std::string name, const at::Tensor& value) {
      t->params_.emplace_back(std::move(name), value.to(at::kFloat).to(device).clone().requires_grad_(true));
    };
    for (const ModuleDelta& m : pack.modules) {
      t->first_param_.push_back(t->params_.size());
      switch (m.op) {
        case ModuleOp::kLowRank:
          add(m.name + ".sigma", m.sigma);
          for (size_t b = 0; b < m.bands.size(); ++b) {
            add(absl::StrCat(m.name, ".band", b, ".u"), Dequantize(m.bands[b].u));
            add(absl::StrCat(m.name, ".band", b, ".vt"), Dequantize(m.bands[b].vt));
          }
          break;
        case ModuleOp::kSparse:
          add(m.name + ".values", m.values);
          // A plain tensor (the pack's may be an inference tensor, which autograd cannot save).
          t->indices_[m.name] = m.indices.to(device).clone();
          break;
        case ModuleOp::kDenseQuant:
          add(m.name + ".dense", Dequantize(m.dense));
          break;
        case ModuleOp::kDense:
          add(m.name + ".full", m.full);
          break;
      }
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "refit: decoding the pack");
  }
  return t;
}

std::map<std::string, at::Tensor> PackRefitWeights::Replacements(bool detached) const {
  auto param = [&](size_t i) { return detached ? params_[i].second.detach() : params_[i].second; };
  std::map<std::string, at::Tensor> out;
  for (size_t k = 0; k < pack_.modules.size(); ++k) {
    const ModuleDelta& m = pack_.modules[k];
    const size_t p = first_param_[k];
    const at::Tensor& w = *base_->Find(m.name);
    at::Tensor delta;
    switch (m.op) {
      case ModuleOp::kLowRank: {
        const at::Tensor sigma = param(p);
        delta = at::zeros(w.sizes(), sigma.options());
        for (size_t b = 0; b < m.bands.size(); ++b) {
          const LowRankBand& band = m.bands[b];
          const at::Tensor u = Rounded(param(p + 1 + 2 * b), band.u);
          const at::Tensor vt = Rounded(param(p + 2 + 2 * b), band.vt);
          delta = delta + (u * sigma.slice(0, band.rank_begin, band.rank_end).unsqueeze(0)).matmul(vt);
        }
        break;
      }
      case ModuleOp::kSparse: {
        const at::Tensor values = RoundedHalf(param(p));
        delta = at::zeros({w.numel()}, values.options()).index_put({indices_.at(m.name)}, values);
        delta = delta.reshape(w.sizes());
        break;
      }
      case ModuleOp::kDenseQuant:
        delta = Rounded(param(p), m.dense);
        break;
      case ModuleOp::kDense:
        delta = param(p);
        break;
    }
    out.emplace(m.name, w.to(at::kFloat) + delta);
  }
  return out;
}

StatusOr<std::shared_ptr<const ModelWeights>> PackRefitWeights::ForwardWeights() const {
  try {
    return base_->WithReplaced(Replacements(/*detached=*/false));
  } catch (const std::exception& e) {
    return StatusFromException(e, "refit: building base + pack");
  }
}

StatusOr<std::shared_ptr<const ModelWeights>> PackRefitWeights::Merged() const {
  try {
    at::NoGradGuard no_grad;
    return base_->WithReplaced(Replacements(/*detached=*/true));
  } catch (const std::exception& e) {
    return StatusFromException(e, "refit: building base + pack");
  }
}

StatusOr<SkillPack> PackRefitWeights::ToPack() const {
  SkillPack out = pack_;
  try {
    at::NoGradGuard no_grad;
    auto param = [&](size_t i) { return params_[i].second.detach().to(at::kCPU); };
    for (size_t k = 0; k < out.modules.size(); ++k) {
      ModuleDelta& m = out.modules[k];
      const size_t p = first_param_[k];
      switch (m.op) {
        case ModuleOp::kLowRank:
          m.sigma = param(p).clone();
          for (size_t b = 0; b < m.bands.size(); ++b) {
            ASSIGN_OR_RETURN(m.bands[b].u, Requantize(param(p + 1 + 2 * b), m.bands[b].u));
            ASSIGN_OR_RETURN(m.bands[b].vt, Requantize(param(p + 2 + 2 * b), m.bands[b].vt));
          }
          break;
        case ModuleOp::kSparse:
          m.values = param(p).to(at::kHalf);
          break;
        case ModuleOp::kDenseQuant: {
          ASSIGN_OR_RETURN(m.dense, Requantize(param(p), m.dense));
          break;
        }
        case ModuleOp::kDense:
          m.full = param(p).clone();
          break;
      }
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "refit: writing the pack");
  }
  RETURN_IF_ERROR(Annotate(ValidateSkillPack(out), "refit: the refitted pack"));
  return out;
}

TeacherKlObjective::TeacherKlObjective(const Transformer& model, std::shared_ptr<const ModelWeights> teacher,
                                       std::vector<TokenizedSequence> sequences)
    : model_(model), teacher_(std::move(teacher)), seqs_(std::move(sequences)) {}

double TeacherKlObjective::Units(const std::vector<int64_t>& examples) const { return ResponseTokens(seqs_, examples); }

StatusOr<MicroBatchLoss> TeacherKlObjective::Loss(const ModelWeights& weights, const std::vector<int64_t>& examples,
                                                  double normaliser) {
  try {
    TokenBatch b = MakeTokenBatch(seqs_, examples);
    const int64_t T = b.tokens.size(1);
    // Positions whose next token is a response token: the targets MakeTokenBatch marks.
    const at::Tensor mask = b.targets.ne(-100);
    at::Tensor teacher_logp;
    {
      at::NoGradGuard no_grad;
      teacher_logp = at::log_softmax(model_.Forward(*teacher_, b.tokens, b.attention_mask).narrow(1, 0, T - 1), -1);
    }
    const at::Tensor logp =
        at::log_softmax(model_.Forward(weights, b.tokens, b.attention_mask).narrow(1, 0, T - 1), -1);
    const at::Tensor kl = (teacher_logp.exp() * (teacher_logp - logp)).sum(-1);  // [B, T-1]
    const at::Tensor sum = kl.masked_select(mask).sum();
    MicroBatchLoss out;
    out.loss = sum / normaliser;
    out.sums["kl"] = sum.item<double>();
    out.tokens = b.attention_mask.sum().item<int64_t>();
    return out;
  } catch (const std::exception& e) {
    return StatusFromException(e, "refit: distillation loss");
  }
}

StatusOr<double> MeanTeacherKl(const Transformer& model, std::shared_ptr<const ModelWeights> teacher,
                               const ModelWeights& weights, const std::vector<TokenizedSequence>& sequences,
                               int64_t batch_size) {
  if (sequences.empty()) return absl::InvalidArgumentError("no sequences to score");
  TeacherKlObjective kl(model, std::move(teacher), sequences);
  at::NoGradGuard no_grad;
  double sum = 0, units = 0;
  for (size_t i = 0; i < sequences.size(); i += static_cast<size_t>(batch_size)) {
    std::vector<int64_t> batch;
    for (size_t j = i; j < std::min(sequences.size(), i + static_cast<size_t>(batch_size)); ++j) {
      batch.push_back(static_cast<int64_t>(j));
    }
    ASSIGN_OR_RETURN(MicroBatchLoss l, kl.Loss(weights, batch, 1.0));
    sum += l.sums.at("kl");
    units += kl.Units(batch);
  }
  return sum / std::max(1.0, units);
}

StatusOr<RefitResult> RefitPack(const SkillPack& pack, std::shared_ptr<const ModelWeights> base,
                                std::shared_ptr<const ModelWeights> tuned, const Transformer& model,
                                std::vector<TokenizedSequence> sequences, const RefitLoopFn& run_loop,
                                double skip_below_kl) {
  if (sequences.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("refit: needs at least 2 training sequences (one held out), got ", sequences.size()));
  }
  const size_t n_val = std::min<size_t>(256, std::max<size_t>(1, sequences.size() / 10));
  std::vector<TokenizedSequence> validation(std::make_move_iterator(sequences.end() - n_val),
                                            std::make_move_iterator(sequences.end()));
  sequences.resize(sequences.size() - n_val);
  // The input pack exactly as a server decodes and composes it.
  ASSIGN_OR_RETURN(DecodedPack decoded, DecodePack(pack, /*keep_factors=*/false));
  PackSelection selection;
  selection.name = pack.manifest.name;
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> original, ComposeWeights(*base, {selection}, {&decoded}));
  constexpr int64_t kBatch = 32;
  ASSIGN_OR_RETURN(double before, MeanTeacherKl(model, tuned, *original, validation, kBatch));

  ASSIGN_OR_RETURN(std::unique_ptr<PackRefitWeights> tw, PackRefitWeights::Create(base, pack));
  RefitResult result;
  result.report["validation_sequences"] = static_cast<int64_t>(n_val);
  result.report["kl_before"] = before;
  // An empty pack (tuned == base) has nothing to train; one already this
  // close to the tuned model has nothing to gain (bench/README.md: 1/4 packs).
  if (tw->parameters().empty() || before <= skip_below_kl) {
    result.report["kl_after"] = before;
    result.report["kept"] = "original";
    result.report["skipped"] = true;
    result.pack = pack;
    return result;
  }
  result.report["skipped"] = false;
  TeacherKlObjective objective(model, tuned, std::move(sequences));
  ASSIGN_OR_RETURN(result.report["loop"], run_loop(*tw, objective));
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelWeights> trained, tw->Merged());
  ASSIGN_OR_RETURN(double after, MeanTeacherKl(model, tuned, *trained, validation, kBatch));
  result.report["kl_after"] = after;
  result.refitted = after < before;
  result.report["kept"] = result.refitted ? "refitted" : "original";
  if (result.refitted) {
    ASSIGN_OR_RETURN(result.pack, tw->ToPack());
  } else {
    result.pack = pack;
  }
  return result;
}

}  // namespace skillpack
