#include "core/weight_delta.h"

#include <cmath>
#include <set>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "core/tensor_util.h"
#include "core/weights.h"

namespace skillpack {
namespace {

Status CheckTerm(const std::string& name, const std::vector<int64_t>& shape, const DeltaTerm& t,
                 c10::optional<at::Device>* device) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("delta for '", name, "': ", what));
  };
  if (!std::isfinite(t.scale)) return bad(absl::StrCat("scale ", t.scale, " is not finite"));
  std::vector<at::Tensor> parts;
  const bool dense = t.dense.defined();
  if (static_cast<int>(dense) + static_cast<int>(t.low_rank()) + static_cast<int>(t.is_sparse()) +
          static_cast<int>(t.is_quant()) !=
      1) {
    return bad("a term needs exactly one of a dense tensor, both factors, sparse rows or quantised rows");
  }
  if (t.low_rank()) {
    if (!t.us.defined() || !t.vt.defined()) return bad("a low-rank term needs both factors");
    if (shape.size() != 2) return bad("low-rank terms need a 2-D tensor");
    if (t.us.dim() != 2 || t.vt.dim() != 2 || t.us.size(0) != shape[0] || t.vt.size(1) != shape[1] ||
        t.us.size(1) != t.vt.size(0)) {
      return bad(absl::StrCat("factors ", ShapeString(t.us.sizes().vec()), " x ", ShapeString(t.vt.sizes().vec()),
                              " do not make a tensor of shape ", ShapeString(shape)));
    }
    const at::ScalarType type = t.us.scalar_type();
    if (type != t.vt.scalar_type() || (type != at::kFloat && type != at::kHalf && type != at::kChar)) {
      return bad("low-rank factors must be both float32, both float16 or both int8");
    }
    parts = {t.us, t.vt};
    if (type == at::kChar) {
      if (!t.rank_scale.defined() || t.rank_scale.scalar_type() != at::kFloat || t.rank_scale.dim() != 1 ||
          t.rank_scale.size(0) != t.us.size(1)) {
        return bad(absl::StrCat("int8 factors need a float32 rank_scale of ", t.us.size(1), " entries"));
      }
      parts.push_back(t.rank_scale);
    } else if (t.rank_scale.defined()) {
      return bad("rank_scale is for int8 factors only");
    }
  } else if (t.rank_scale.defined()) {
    return bad("rank_scale is for int8 factors only");
  } else if (t.is_sparse()) {
    if (shape.size() != 2) return bad("sparse terms need a 2-D tensor");
    RETURN_IF_ERROR(Annotate(CheckSparseRows(t.sparse, shape[0], shape[1]), absl::StrCat("delta for '", name, "'")));
    parts = {t.sparse.offsets, t.sparse.cols, t.sparse.values};
  } else if (t.is_quant()) {
    if (shape.size() != 2) return bad("quantised terms need a 2-D tensor");
    RETURN_IF_ERROR(Annotate(CheckQuantRows(t.quant, shape[0], shape[1]), absl::StrCat("delta for '", name, "'")));
    parts = {t.quant.codes, t.quant.scales, t.quant.shifts};
  } else {
    const at::ScalarType type = t.dense.scalar_type();
    if (type != at::kFloat && (type != at::kHalf || shape.size() != 2)) {
      return bad("dense terms must be float32 (or float16 on a 2-D tensor)");
    }
    if (t.dense.sizes().vec() != shape) {
      return bad(
          absl::StrCat("dense term of shape ", ShapeString(t.dense.sizes().vec()), ", expected ", ShapeString(shape)));
    }
    parts = {t.dense};
  }
  for (const at::Tensor& p : parts) {
    if (!device->has_value()) *device = p.device();
    if (p.device() != **device) return bad("terms on different devices");
  }
  return absl::OkStatus();
}

// The kernel's view of a checked term (CheckTerm: types and shapes agree).
FactorView KernelView(const DeltaTerm& t) {
  FactorView v;
  if (!t.low_rank() || !t.vt.is_cpu()) return v;
  // [rank, in] stored as [in, rank] row-major (where both hold, rank or in is
  // 1 and the two layouts are the same bytes: the contiguous one is read).
  v.vt_transposed = !t.vt.is_contiguous() && t.vt.t().is_contiguous();
  if (!v.vt_transposed && !t.vt.is_contiguous()) return v;
  v.us_transposed = t.us.t().is_contiguous();  // [out, rank] stored as [rank, out], row-major
  if (!v.us_transposed && !t.us.is_contiguous()) return v;
  if (t.rank_scale.defined() && !t.rank_scale.is_contiguous()) return v;
  v.ready = true;
  v.type = t.vt.scalar_type();
  v.rank = t.vt.size(0);
  v.in = t.vt.size(1);
  v.out = t.us.size(0);
  v.vt = t.vt.data_ptr();
  v.us = t.us.data_ptr();
  if (t.rank_scale.defined()) v.rank_scale = t.rank_scale.data_ptr<float>();
  return v;
}

}  // namespace

at::Tensor UsLayout(const at::Tensor& us) { return us.t().contiguous().t(); }

at::Tensor VtLayout(const at::Tensor& vt) { return vt.t().contiguous().t(); }

StatusOr<std::shared_ptr<const WeightDelta>> WeightDelta::Create(const ModelConfig& config,
                                                                 std::map<std::string, std::vector<DeltaTerm>> terms) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (TensorSpec& s : ExpectedTensors(config)) shapes.emplace(std::move(s.name), std::move(s.shape));
  std::shared_ptr<WeightDelta> d(new WeightDelta());
  std::set<const void*> seen;
  c10::optional<at::Device> device;
  for (auto& [name, list] : terms) {
    auto it = shapes.find(name);
    if (it == shapes.end()) {
      return absl::InvalidArgumentError(
          name == "lm_head.weight" && config.tie_word_embeddings
              ? std::string("delta for 'lm_head.weight': this model ties lm_head to model.embed_tokens.weight")
              : absl::StrCat("delta for '", name, "': not a tensor of the model"));
    }
    std::vector<DeltaTerm> kept;
    for (DeltaTerm& t : list) {
      RETURN_IF_ERROR(CheckTerm(name, it->second, t, &device));
      if (t.scale == 0.0f) continue;
      t.view = KernelView(t);
      for (const at::Tensor* p : {&t.us, &t.vt, &t.rank_scale, &t.dense, &t.sparse.offsets, &t.sparse.cols,
                                  &t.sparse.values, &t.quant.codes, &t.quant.scales, &t.quant.shifts, &t.quant.perm}) {
        if (p->defined() && seen.insert(p->data_ptr()).second) d->bytes_ += p->numel() * p->element_size();
      }
      kept.push_back(std::move(t));
    }
    if (!kept.empty()) d->terms_.emplace(name, std::move(kept));
  }
  for (const auto& [name, list] : d->terms_) d->index_.emplace(name, &list);
  d->layer_index_.assign(config.num_hidden_layers * kLayerTensors, nullptr);
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    for (int t = 0; t < kLayerTensors; ++t) {
      d->layer_index_[l * kLayerTensors + t] =
          d->Find(LayerTensorName(l, LayerTensorSuffix(static_cast<LayerTensor>(t))));
    }
  }
  return std::shared_ptr<const WeightDelta>(std::move(d));
}

at::Tensor DeltaTerm::UsAs(at::ScalarType type) const {
  at::Tensor u = us.to(type);
  return rank_scale.defined() ? u * rank_scale.to(type) : u;
}

const std::vector<DeltaTerm>* WeightDelta::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const std::vector<DeltaTerm>* WeightDelta::Find(int64_t layer, LayerTensor t) const {
  const int64_t i = layer * kLayerTensors + static_cast<int>(t);
  return layer < 0 || i >= static_cast<int64_t>(layer_index_.size()) ? nullptr : layer_index_[i];
}

}  // namespace skillpack
