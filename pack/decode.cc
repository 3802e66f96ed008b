#include "pack/decode.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/weight_delta.h"
#include "pack/format.h"

namespace skillpack {
namespace {

// Validates one module through the pack validator (a one-module pack with a
// placeholder manifest), so decode and read enforce the same rules.
Status ValidateOne(const ModuleDelta& m) {
  SkillPack p;
  p.manifest.name = "decode";
  p.manifest.base_fingerprint = "sha256:" + std::string(64, '0');
  // Copies only tensor handles (cheap).
  p.modules.push_back(m);
  return ValidateSkillPack(p);
}

LowRankFactors FactorsOf(const ModuleDelta& m) {
  const int64_t out = m.shape[0], in = m.shape[1];
  const at::TensorOptions opts = m.sigma.options().dtype(at::kFloat);
  if (m.bands.empty()) return {at::zeros({out, 0}, opts), at::zeros({0, in}, opts)};
  std::vector<at::Tensor> us, vt;
  for (const LowRankBand& b : m.bands) {
    const at::Tensor sigma = m.sigma.slice(0, b.rank_begin, b.rank_end);
    us.push_back(Dequantize(b.u) * sigma.unsqueeze(0));
    vt.push_back(Dequantize(b.vt));
  }
  return {at::cat(us, 1).contiguous(), at::cat(vt, 0).contiguous()};
}

at::Tensor DecodeValid(const ModuleDelta& m) {
  switch (m.op) {
    case ModuleOp::kLowRank: {
      const LowRankFactors f = FactorsOf(m);
      return f.us.matmul(f.vt);
    }
    case ModuleOp::kSparse: {
      int64_t numel = 1;
      for (int64_t d : m.shape) numel *= d;
      at::Tensor flat = at::zeros({numel}, m.values.options().dtype(at::kFloat));
      flat.index_put_({m.indices}, m.values.to(at::kFloat));
      return flat.reshape(m.shape);
    }
    case ModuleOp::kDenseQuant:
      return Dequantize(m.dense);
    case ModuleOp::kDense:
      return m.full.to(at::kFloat).clone();
  }
  return at::Tensor();
}

}  // namespace

StatusOr<at::Tensor> DecodeModuleDelta(const ModuleDelta& m) {
  RETURN_IF_ERROR(ValidateOne(m));
  try {
    return DecodeValid(m);
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("decoding module '", m.name, "'"));
  }
}

StatusOr<LowRankFactors> DecodeLowRankFactors(const ModuleDelta& m) {
  if (m.op != ModuleOp::kLowRank) {
    return absl::InvalidArgumentError(absl::StrCat("module '", m.name, "' is ", ModuleOpName(m.op), ", not lowrank"));
  }
  RETURN_IF_ERROR(ValidateOne(m));
  try {
    return FactorsOf(m);
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("decoding module '", m.name, "'"));
  }
}

StatusOr<FactorPrecision> ParseFactorPrecision(const std::string& name) {
  if (name == "float32") return FactorPrecision::kFloat32;
  if (name == "float16") return FactorPrecision::kFloat16;
  if (name == "int8") return FactorPrecision::kInt8;
  return absl::InvalidArgumentError(absl::StrCat("factor precision '", name, "' is not one of float32, float16, int8"));
}

const char* FactorPrecisionName(FactorPrecision p) {
  switch (p) {
    case FactorPrecision::kFloat16:
      return "float16";
    case FactorPrecision::kInt8:
      return "int8";
    case FactorPrecision::kFloat32:
      break;
  }
  return "float32";
}

at::Tensor DecodedModule::DenseDelta() const {
  if (delta.defined()) {
    return delta.scalar_type() == at::kFloat && factor_scale == 1.0f ? delta : delta.to(at::kFloat) * factor_scale;
  }
  if (sparse.defined()) return sparse.Dense();
  if (quant.defined()) return quant.Dense();
  at::Tensor u = us.to(at::kFloat);
  if (rank_scale.defined()) u = u * rank_scale;
  at::Tensor d = u.matmul(vt.to(at::kFloat));
  return factor_scale == 1.0f ? d : d.mul_(factor_scale);
}

namespace {

// Symmetric int8 codes of t along `dim` (0: per column, 1: per row) and their
// scales (largest magnitude / 127; 1 for an all-zero line, whose codes are 0).
std::pair<at::Tensor, at::Tensor> Int8Codes(const at::Tensor& t, int64_t dim) {
  at::Tensor amax = t.numel() > 0 ? std::get<0>(t.abs().max(dim)) : at::zeros({t.size(1 - dim)});
  at::Tensor scale = at::where(amax > 0, amax / 127.0, at::ones_like(amax));
  at::Tensor codes = (t / scale.unsqueeze(dim)).round_().clamp_(-127, 127).to(at::kChar);
  return {codes, scale};
}

// *t as float16 after dividing it by the power of two p at or above its
// largest magnitude (exact: its largest entry lands in [0.5, 1]); returns p.
double ToScaledHalf(at::Tensor* t) {
  const double amax = t->numel() > 0 ? t->abs().max().item<double>() : 0.0;
  int exponent = 0;
  if (amax > 0 && std::isfinite(amax)) std::frexp(amax, &exponent);  // amax = [0.5, 1) · 2^exponent
  const double p = std::ldexp(1.0, exponent);
  *t = (*t / p).to(at::kHalf);
  return p;
}

}  // namespace

void SetFactorPrecision(DecodedModule* m, FactorPrecision precision) {
  if (precision == FactorPrecision::kInt8) {
    // U·diag(σ) [out, k] by column, Vᵀ [k, in] by row: ΔŴ = Uq · diag(su · sv · factor_scale) · Vq.
    auto [uq, su] = Int8Codes(m->us.to(at::kFloat), 0);
    auto [vq, sv] = Int8Codes(m->vt.to(at::kFloat), 1);
    m->rank_scale = (su * sv * m->factor_scale).contiguous();
    m->us = UsLayout(uq);
    m->vt = VtLayout(vq);
    m->factor_scale = 1.0f;
    return;
  }
  if (precision != FactorPrecision::kFloat16) {
    m->us = UsLayout(m->us);
    m->vt = VtLayout(m->vt);
    return;
  }
  // Each factor divided by the power of two at or above its largest entry
  // (exact), then rounded to float16; the two powers go to factor_scale.
  double scale = m->factor_scale;
  for (at::Tensor* t : {&m->us, &m->vt}) scale *= ToScaledHalf(t);
  m->us = UsLayout(m->us);
  m->vt = VtLayout(m->vt);
  m->factor_scale = static_cast<float>(scale);
}

QuantRows QuantRowsOf(const QuantizedMatrix& m) {
  // One group of all the columns is stored at their width, not padded to group_size.
  const int64_t groups = m.num_groups(), gs = groups == 1 ? m.cols : m.group_size;
  const int64_t center = int64_t{1} << (m.bits - 1);
  at::Tensor c = (m.codes.to(at::kShort) - center).to(at::kChar);  // [rows, cols], each in [-center, center)
  if (groups * gs > m.cols) c = at::constant_pad_nd(c, {0, groups * gs - m.cols});
  QuantRows q;
  q.codes = c.reshape({m.rows, groups, gs}).permute({1, 0, 2}).contiguous();
  q.scales = m.scales.to(at::kFloat).t().contiguous();
  q.shifts = (static_cast<double>(center) - m.zeros.to(at::kFloat)).t().contiguous();
  if (m.perm.defined()) q.perm = m.perm.to(at::kLong).contiguous();
  q.num_cols = m.cols;
  return q;
}

void StoreDeltaAsHalf(DecodedModule* m) {
  m->factor_scale = static_cast<float>(ToScaledHalf(&m->delta));
  m->delta = m->delta.contiguous();
}

int64_t DecodedModule::bytes() const {
  int64_t n = 0;
  for (const at::Tensor* t : {&delta, &us, &vt, &rank_scale}) {
    if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return n + sparse.bytes() + quant.bytes();
}

int64_t DecodedPack::bytes() const {
  int64_t n = 0;
  for (const auto& [name, m] : modules) n += m.bytes();
  return n;
}

StatusOr<DecodedPack> DecodePack(const SkillPack& pack, bool keep_factors, FactorPrecision factors) {
  RETURN_IF_ERROR(Annotate(ValidateSkillPack(pack), absl::StrCat("pack '", pack.manifest.name, "'")));
  DecodedPack out;
  out.name = pack.manifest.name;
  out.base_fingerprint = pack.manifest.base_fingerprint;
  try {
    for (const ModuleDelta& m : pack.modules) {
      DecodedModule d;
      d.name = m.name;
      if (keep_factors && m.op == ModuleOp::kLowRank) {
        LowRankFactors f = FactorsOf(m);
        d.us = std::move(f.us);
        d.vt = std::move(f.vt);
        SetFactorPrecision(&d, factors);
      } else if (keep_factors && m.op == ModuleOp::kSparse && m.shape.size() == 2) {
        d.sparse = SparseRows::FromFlat(m.indices, m.values, m.shape[0], m.shape[1]);
      } else if (keep_factors && m.op == ModuleOp::kDenseQuant) {
        d.quant = QuantRowsOf(m.dense);
      } else {
        d.delta = DecodeValid(m);
        if (keep_factors && d.delta.dim() == 2 && factors != FactorPrecision::kFloat32) StoreDeltaAsHalf(&d);
      }
      out.modules.emplace(m.name, std::move(d));
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("decoding pack '", pack.manifest.name, "'"));
  }
  return out;
}

}  // namespace skillpack
