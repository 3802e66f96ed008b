#include "pack/format.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/safetensors.h"
#include "core/tensor_util.h"
#include "pack/codec/bitpack.h"
#include "pack/fingerprint.h"

namespace skillpack {
namespace {

constexpr double kHalfMinNormal = 6.103515625e-05;  // 2^-14

std::string ModuleWhat(const std::string& name) { return absl::StrCat("module '", name, "'"); }

Status Invalid(absl::string_view where, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", msg));
}

std::string TensorShape(const at::Tensor& t) { return t.defined() ? ShapeString(t.sizes().vec()) : "undefined"; }

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Module shapes: at least one dimension, all positive, numel <= kMaxModuleNumel.
Status CheckModuleShape(const std::vector<int64_t>& shape, absl::string_view where) {
  if (shape.empty()) return Invalid(where, "shape must have at least one dimension");
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d <= 0) return Invalid(where, absl::StrCat("shape ", ShapeString(shape), " has a dimension <= 0"));
    if (d > kMaxModuleNumel || n > kMaxModuleNumel / d) {
      return Invalid(where, absl::StrCat("shape ", ShapeString(shape), " is too large"));
    }
    n *= d;
  }
  return absl::OkStatus();
}

// Scales are stored as F16 exactly when every one of them survives the
// round trip through fp16 unchanged.
bool ScalesFitHalf(const at::Tensor& scales) {
  if (scales.numel() == 0) return true;
  return at::equal(scales.to(at::kHalf).to(at::kFloat), scales);
}

}  // namespace

Status CheckGroupSize(int64_t group_size, int64_t cols, absl::string_view where) {
  const int64_t limit = std::max(cols, kMaxGroupSize);
  if (group_size < 1 || group_size > limit) {
    return Invalid(where, absl::StrCat("group_size ", group_size, " out of range (1..", limit, ": the row length ",
                                       cols, " or ", kMaxGroupSize, ")"));
  }
  return absl::OkStatus();
}

namespace {

// Band b covers [rank_begin, rank_end): it must start where band b-1 ended
// (`next`) and be non-empty within the module's rank.
Status CheckBandRange(const LowRankBand& band, int64_t next, int64_t rank, absl::string_view bw) {
  if (band.rank_begin != next) {
    return Invalid(
        bw, absl::StrCat("rank_begin is ", band.rank_begin, ", want ", next, " (bands must be contiguous from 0)"));
  }
  if (band.rank_end <= band.rank_begin || band.rank_end > rank) {
    return Invalid(
        bw, absl::StrCat("rank range [", band.rank_begin, ", ", band.rank_end, ") is empty or beyond rank ", rank));
  }
  return absl::OkStatus();
}

Status ValidateQuant(const QuantizedMatrix& q, int64_t rows, int64_t cols, absl::string_view where) {
  if (!IsSupportedCodeWidth(q.bits)) {
    return Invalid(where, absl::StrCat("bits ", q.bits, " not supported (want 2, 3, 4 or 8)"));
  }
  RETURN_IF_ERROR(CheckGroupSize(q.group_size, cols, where));
  if (q.rows != rows || q.cols != cols) {
    return Invalid(where, absl::StrCat("is [", q.rows, ", ", q.cols, "], want [", rows, ", ", cols, "]"));
  }
  Status s = ValidateQuantizedMatrix(q);
  if (!s.ok()) return Invalid(where, s.message());
  return absl::OkStatus();
}

Status ValidateModule(const ModuleDelta& m) {
  const std::string where = ModuleWhat(m.name);
  RETURN_IF_ERROR(CheckModuleShape(m.shape, where));
  const int64_t numel = Numel(m.shape);
  switch (m.op) {
    case ModuleOp::kLowRank: {
      if (m.shape.size() != 2) {
        return Invalid(where, absl::StrCat("a lowrank module must be 2-D, shape is ", ShapeString(m.shape)));
      }
      const int64_t rows = m.shape[0], cols = m.shape[1];
      if (m.sigma.defined() && (m.sigma.scalar_type() != at::kFloat || m.sigma.dim() != 1)) {
        return Invalid(where, absl::StrCat("sigma must be float32 1-D, got ", c10::toString(m.sigma.scalar_type()), " ",
                                           TensorShape(m.sigma)));
      }
      const int64_t rank = m.rank();
      if (rank > std::min(rows, cols)) {
        return Invalid(where, absl::StrCat("rank ", rank, " exceeds min(shape) = ", std::min(rows, cols)));
      }
      if (rank > 0 && !at::isfinite(m.sigma).all().item<bool>()) {
        return Invalid(where, "sigma has non-finite entries");
      }
      int64_t next = 0;
      for (size_t b = 0; b < m.bands.size(); ++b) {
        const LowRankBand& band = m.bands[b];
        const std::string bw = absl::StrCat(where, ": band ", b);
        RETURN_IF_ERROR(CheckBandRange(band, next, rank, bw));
        RETURN_IF_ERROR(ValidateQuant(band.u, rows, band.width(), absl::StrCat(bw, " u")));
        RETURN_IF_ERROR(ValidateQuant(band.vt, band.width(), cols, absl::StrCat(bw, " vt")));
        next = band.rank_end;
      }
      if (next != rank) {
        return Invalid(where, absl::StrCat("bands cover [0, ", next, ") but rank is ", rank));
      }
      return absl::OkStatus();
    }
    case ModuleOp::kSparse: {
      if (!m.indices.defined() || m.indices.scalar_type() != at::kLong || m.indices.dim() != 1) {
        return Invalid(where, absl::StrCat("indices must be int64 1-D, got ",
                                           m.indices.defined() ? c10::toString(m.indices.scalar_type()) : "", " ",
                                           TensorShape(m.indices)));
      }
      if (!m.values.defined() || m.values.scalar_type() != at::kHalf || m.values.dim() != 1 ||
          m.values.numel() != m.indices.numel()) {
        return Invalid(where, absl::StrCat("values must be float16 [", m.indices.numel(), "], got ",
                                           m.values.defined() ? c10::toString(m.values.scalar_type()) : "", " ",
                                           TensorShape(m.values)));
      }
      const int64_t nnz = m.indices.numel();
      if (nnz > numel) return Invalid(where, absl::StrCat("nnz ", nnz, " exceeds numel ", numel));
      if (nnz > 0) {
        const int64_t lo = m.indices.min().item<int64_t>(), hi = m.indices.max().item<int64_t>();
        if (lo < 0 || hi >= numel) {
          return Invalid(where, absl::StrCat("indices out of range: [", lo, ", ", hi, "] for numel ", numel));
        }
        if (nnz > 1 && !(m.indices.slice(0, 1) > m.indices.slice(0, 0, nnz - 1)).all().item<bool>()) {
          return Invalid(where, "indices are not strictly increasing");
        }
        if (!at::isfinite(m.values).all().item<bool>()) {
          return Invalid(where, "values have non-finite entries");
        }
      }
      return absl::OkStatus();
    }
    case ModuleOp::kDenseQuant:
      if (m.shape.size() != 2) {
        return Invalid(where, absl::StrCat("a dense_quant module must be 2-D, shape is ", ShapeString(m.shape)));
      }
      return ValidateQuant(m.dense, m.shape[0], m.shape[1], absl::StrCat(where, ": dense"));
    case ModuleOp::kDense:
      if (!m.full.defined() || m.full.scalar_type() != at::kFloat || m.full.sizes().vec() != m.shape) {
        return Invalid(
            where, absl::StrCat("full must be float32 ", ShapeString(m.shape), ", got ",
                                m.full.defined() ? c10::toString(m.full.scalar_type()) : "", " ", TensorShape(m.full)));
      }
      if (!at::isfinite(m.full).all().item<bool>()) return Invalid(where, "full has non-finite entries");
      return absl::OkStatus();
  }
  return Invalid(where, "unknown op");
}

// ---------------------------------------------------------------- writing

struct Blob {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::string TensorBytes(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kCPU).contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

StatusOr<std::string> PackedBytesOf(const at::Tensor& codes, int bits) {
  const at::Tensor c = codes.detach().to(at::kCPU).contiguous();
  std::string out(PackedBytes(c.numel(), bits), '\0');
  RETURN_IF_ERROR(PackCodes(c.data_ptr<uint8_t>(), c.numel(), bits, reinterpret_cast<uint8_t*>(out.data())));
  return out;
}

Json QuantJson(const QuantizedMatrix& q) {
  return {{"bits", q.bits}, {"group_size", q.group_size}, {"act_order", q.perm.defined()}};
}

Status EncodeQuant(const QuantizedMatrix& q, const std::string& prefix, std::vector<Blob>* out) {
  ASSIGN_OR_RETURN(std::string codes, PackedBytesOf(q.codes, q.bits));
  const int64_t codes_len = static_cast<int64_t>(codes.size());
  out->push_back({prefix + ".codes", DType::kU8, {codes_len}, std::move(codes)});
  const at::Tensor scales = q.scales.detach().to(at::kCPU).contiguous();
  if (ScalesFitHalf(scales)) {
    out->push_back({prefix + ".scales", DType::kF16, scales.sizes().vec(), TensorBytes(scales.to(at::kHalf))});
  } else {
    out->push_back({prefix + ".scales", DType::kF32, scales.sizes().vec(), TensorBytes(scales)});
  }
  ASSIGN_OR_RETURN(std::string zeros, PackedBytesOf(q.zeros, q.bits));
  const int64_t zeros_len = static_cast<int64_t>(zeros.size());
  out->push_back({prefix + ".zeros", DType::kU8, {zeros_len}, std::move(zeros)});
  if (q.perm.defined()) {
    if (q.cols > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, ": too many columns for an I32 perm"));
    }
    out->push_back({prefix + ".perm", DType::kI32, {q.cols}, TensorBytes(q.perm.to(at::kInt))});
  }
  return absl::OkStatus();
}

bool SparseIndicesFitI32(int64_t numel) { return numel <= (int64_t{1} << 31); }

StatusOr<Json> EncodeModule(const ModuleDelta& m, std::vector<Blob>* out) {
  Json j = {{"name", m.name}, {"op", ModuleOpName(m.op)}, {"shape", m.shape}, {"rank", m.rank()}};
  const std::string p = m.name + "::";
  switch (m.op) {
    case ModuleOp::kLowRank: {
      const at::Tensor sigma = m.sigma.defined() ? m.sigma : at::empty({0}, at::kFloat);
      out->push_back({p + "sigma", DType::kF32, {sigma.numel()}, TensorBytes(sigma)});
      Json bands = Json::array();
      for (size_t b = 0; b < m.bands.size(); ++b) {
        const LowRankBand& band = m.bands[b];
        RETURN_IF_ERROR(EncodeQuant(band.u, absl::StrCat(p, "band", b, ".u"), out));
        RETURN_IF_ERROR(EncodeQuant(band.vt, absl::StrCat(p, "band", b, ".vt"), out));
        bands.push_back({{"rank_begin", band.rank_begin},
                         {"rank_end", band.rank_end},
                         {"u", QuantJson(band.u)},
                         {"vt", QuantJson(band.vt)}});
      }
      j["bands"] = std::move(bands);
      break;
    }
    case ModuleOp::kSparse: {
      const int64_t nnz = m.indices.numel();
      if (SparseIndicesFitI32(Numel(m.shape))) {
        out->push_back({p + "indices", DType::kI32, {nnz}, TensorBytes(m.indices.to(at::kInt))});
      } else {
        out->push_back({p + "indices", DType::kI64, {nnz}, TensorBytes(m.indices)});
      }
      out->push_back({p + "values", DType::kF16, {nnz}, TensorBytes(m.values)});
      j["nnz"] = nnz;
      j["density"] = static_cast<double>(nnz) / static_cast<double>(Numel(m.shape));
      break;
    }
    case ModuleOp::kDenseQuant:
      RETURN_IF_ERROR(EncodeQuant(m.dense, p + "dense", out));
      j["quant"] = QuantJson(m.dense);
      break;
    case ModuleOp::kDense:
      out->push_back({p + "full", DType::kF32, m.shape, TensorBytes(m.full)});
      break;
  }
  return j;
}

Json ManifestJson(const PackManifest& mf) {
  return {{"name", mf.name},
          {"version", mf.version},
          {"base_fingerprint", mf.base_fingerprint},
          {"description", mf.description},
          {"tags", mf.tags},
          {"provenance", mf.provenance},
          {"created_at", mf.created_at}};
}

// ---------------------------------------------------------------- reading

// Hands out the file's tensors by name, checking dtype and shape, and
// remembers which were taken so leftovers can be reported.
class TensorSource {
 public:
  explicit TensorSource(const SafetensorsFile& file) : file_(file) {}

  // Copies tensor `name` (dtype one of `dtypes`, shape `shape`) into a new CPU
  // tensor of the same dtype. Adds its bytes to *bytes.
  StatusOr<at::Tensor> Take(const std::string& name, std::initializer_list<DType> dtypes,
                            const std::vector<int64_t>& shape, int64_t* bytes) {
    const TensorView* v = file_.Find(name);
    if (v == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing tensor '", name, "'"));
    taken_.insert(name);
    if (std::find(dtypes.begin(), dtypes.end(), v->dtype) == dtypes.end()) {
      std::string want;
      for (DType d : dtypes) absl::StrAppend(&want, want.empty() ? "" : " or ", DTypeName(d));
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' has dtype ", DTypeName(v->dtype), ", want ", want));
    }
    if (v->shape != shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' has shape ", ShapeString(v->shape), ", want ", ShapeString(shape)));
    }
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(TorchScalarType(v->dtype)));
    if (v->nbytes > 0) std::memcpy(t.data_ptr(), v->data, v->nbytes);
    *bytes += static_cast<int64_t>(v->nbytes);
    return t;
  }

  bool Has(const std::string& name) const { return file_.Find(name) != nullptr; }

  // The first tensor never taken, or "" when all were.
  std::string FirstUntaken() const {
    for (const TensorView& v : file_.tensors()) {
      if (taken_.count(v.name) == 0) return v.name;
    }
    return "";
  }

 private:
  const SafetensorsFile& file_;
  std::set<std::string> taken_;
};

StatusOr<at::Tensor> UnpackTensor(const at::Tensor& packed, int64_t rows, int64_t cols, int bits,
                                  const std::string& name) {
  const int64_t count = rows * cols;
  at::Tensor codes = at::empty({rows, cols}, at::kByte);
  RETURN_IF_ERROR(
      Annotate(UnpackCodes(packed.data_ptr<uint8_t>(), packed.numel(), count, bits, codes.data_ptr<uint8_t>()),
               absl::StrCat("tensor '", name, "'")));
  const int64_t used_bits = (count * bits) % 8;
  if (used_bits != 0 && (packed.data_ptr<uint8_t>()[packed.numel() - 1] >> used_bits) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has nonzero padding bits"));
  }
  return codes;
}

// Reads one quantised matrix described by `j` from tensors `prefix`.codes,
// .scales, .zeros (and .perm). Errors start with `what`.
StatusOr<QuantizedMatrix> ReadQuant(TensorSource& src, const Json& j, int64_t rows, int64_t cols,
                                    const std::string& prefix, absl::string_view what, int64_t* bytes) {
  QuantizedMatrix q;
  ASSIGN_OR_RETURN(q.bits, GetField<int>(j, "bits", what));
  ASSIGN_OR_RETURN(q.group_size, GetField<int64_t>(j, "group_size", what));
  ASSIGN_OR_RETURN(bool act_order, GetField<bool>(j, "act_order", what));
  if (!IsSupportedCodeWidth(q.bits)) {
    return Invalid(what, absl::StrCat("bits ", q.bits, " not supported (want 2, 3, 4 or 8)"));
  }
  RETURN_IF_ERROR(CheckGroupSize(q.group_size, cols, what));
  q.rows = rows;
  q.cols = cols;
  const int64_t ng = q.num_groups();
  auto in_context = [&](StatusOr<at::Tensor> t) -> StatusOr<at::Tensor> {
    if (!t.ok()) return Invalid(what, t.status().message());
    return t;
  };
  const std::string codes_name = prefix + ".codes", zeros_name = prefix + ".zeros";
  const int64_t codes_bytes = static_cast<int64_t>(PackedBytes(rows * cols, q.bits));
  ASSIGN_OR_RETURN(at::Tensor packed_codes, in_context(src.Take(codes_name, {DType::kU8}, {codes_bytes}, bytes)));
  ASSIGN_OR_RETURN(q.codes, in_context(UnpackTensor(packed_codes, rows, cols, q.bits, codes_name)));
  ASSIGN_OR_RETURN(at::Tensor scales,
                   in_context(src.Take(prefix + ".scales", {DType::kF16, DType::kF32}, {rows, ng}, bytes)));
  q.scales = scales.to(at::kFloat);
  const int64_t zeros_bytes = static_cast<int64_t>(PackedBytes(rows * ng, q.bits));
  ASSIGN_OR_RETURN(at::Tensor packed_zeros, in_context(src.Take(zeros_name, {DType::kU8}, {zeros_bytes}, bytes)));
  ASSIGN_OR_RETURN(q.zeros, in_context(UnpackTensor(packed_zeros, rows, ng, q.bits, zeros_name)));
  if (act_order) {
    ASSIGN_OR_RETURN(at::Tensor perm,
                     in_context(src.Take(prefix + ".perm", {DType::kI32, DType::kI64}, {cols}, bytes)));
    q.perm = perm.to(at::kLong);
  }
  return q;
}

StatusOr<std::vector<int64_t>> ReadShape(const Json& j, absl::string_view what) {
  auto it = j.find("shape");
  if (it == j.end() || !it->is_array()) return Invalid(what, "field 'shape' must be an array of integers");
  std::vector<int64_t> shape;
  for (const Json& d : *it) {
    if (!d.is_number_integer()) return Invalid(what, "field 'shape' must be an array of integers");
    shape.push_back(d.get<int64_t>());
  }
  RETURN_IF_ERROR(CheckModuleShape(shape, what));
  return shape;
}

StatusOr<ModuleDelta> ReadModule(TensorSource& src, const Json& j, size_t index) {
  ModuleDelta m;
  const std::string what0 = absl::StrCat("modules[", index, "]");
  if (!j.is_object()) return Invalid(what0, "expected a JSON object");
  ASSIGN_OR_RETURN(m.name, GetField<std::string>(j, "name", what0));
  if (m.name.empty()) return Invalid(what0, "empty module name");
  const std::string what = ModuleWhat(m.name);
  ASSIGN_OR_RETURN(std::string op, GetField<std::string>(j, "op", what));
  {
    auto op_or = ModuleOpFromName(op);
    if (!op_or.ok()) return Invalid(what, op_or.status().message());
    m.op = *op_or;
  }
  ASSIGN_OR_RETURN(m.shape, ReadShape(j, what));
  ASSIGN_OR_RETURN(int64_t rank, GetField<int64_t>(j, "rank", what));
  ASSIGN_OR_RETURN(int64_t manifest_bytes, GetField<int64_t>(j, "bytes", what));
  int64_t bytes = 0;
  const std::string p = m.name + "::";
  const int64_t numel = Numel(m.shape);
  auto annotate = [&](Status s) { return s.ok() ? s : Invalid(what, s.message()); };
  switch (m.op) {
    case ModuleOp::kLowRank: {
      if (m.shape.size() != 2) {
        return Invalid(what, absl::StrCat("a lowrank module must be 2-D, shape is ", ShapeString(m.shape)));
      }
      if (rank < 0 || rank > std::min(m.shape[0], m.shape[1])) {
        return Invalid(what, absl::StrCat("rank ", rank, " out of range for shape ", ShapeString(m.shape)));
      }
      auto sigma = src.Take(p + "sigma", {DType::kF32}, {rank}, &bytes);
      RETURN_IF_ERROR(annotate(sigma.status()));
      m.sigma = *sigma;
      auto bands = j.find("bands");
      if (bands == j.end() || !bands->is_array()) return Invalid(what, "field 'bands' must be an array");
      int64_t next = 0;
      for (size_t b = 0; b < bands->size(); ++b) {
        const Json& bj = (*bands)[b];
        const std::string bw = absl::StrCat(what, ": band ", b);
        LowRankBand band;
        ASSIGN_OR_RETURN(band.rank_begin, GetField<int64_t>(bj, "rank_begin", bw));
        ASSIGN_OR_RETURN(band.rank_end, GetField<int64_t>(bj, "rank_end", bw));
        RETURN_IF_ERROR(CheckBandRange(band, next, rank, bw));
        next = band.rank_end;
        auto uj = bj.find("u"), vj = bj.find("vt");
        if (uj == bj.end() || vj == bj.end()) return Invalid(bw, "fields 'u' and 'vt' are required");
        const std::string bp = absl::StrCat(p, "band", b);
        ASSIGN_OR_RETURN(band.u, ReadQuant(src, *uj, m.shape[0], band.width(), bp + ".u", bw + " u", &bytes));
        ASSIGN_OR_RETURN(band.vt, ReadQuant(src, *vj, band.width(), m.shape[1], bp + ".vt", bw + " vt", &bytes));
        m.bands.push_back(std::move(band));
      }
      if (next != rank) return Invalid(what, absl::StrCat("bands cover [0, ", next, ") but rank is ", rank));
      break;
    }
    case ModuleOp::kSparse: {
      ASSIGN_OR_RETURN(int64_t nnz, GetField<int64_t>(j, "nnz", what));
      ASSIGN_OR_RETURN(double density, GetField<double>(j, "density", what));
      if (nnz < 0 || nnz > numel) return Invalid(what, absl::StrCat("nnz ", nnz, " out of range for numel ", numel));
      const double want = static_cast<double>(nnz) / static_cast<double>(numel);
      if (!(std::fabs(density - want) <= 1e-9 * std::max(1.0, want))) {
        return Invalid(what, absl::StrCat("density ", density, " does not match nnz / numel = ", want));
      }
      auto indices = src.Take(p + "indices", {DType::kI32, DType::kI64}, {nnz}, &bytes);
      RETURN_IF_ERROR(annotate(indices.status()));
      m.indices = indices->to(at::kLong);
      auto values = src.Take(p + "values", {DType::kF16}, {nnz}, &bytes);
      RETURN_IF_ERROR(annotate(values.status()));
      m.values = *values;
      break;
    }
    case ModuleOp::kDenseQuant: {
      if (m.shape.size() != 2) {
        return Invalid(what, absl::StrCat("a dense_quant module must be 2-D, shape is ", ShapeString(m.shape)));
      }
      auto qj = j.find("quant");
      if (qj == j.end()) return Invalid(what, "missing field 'quant'");
      ASSIGN_OR_RETURN(m.dense, ReadQuant(src, *qj, m.shape[0], m.shape[1], p + "dense", what + ": dense", &bytes));
      break;
    }
    case ModuleOp::kDense: {
      auto full = src.Take(p + "full", {DType::kF32}, m.shape, &bytes);
      RETURN_IF_ERROR(annotate(full.status()));
      m.full = *full;
      break;
    }
  }
  if (m.op != ModuleOp::kLowRank && rank != 0) {
    return Invalid(what, absl::StrCat("rank must be 0 for op ", ModuleOpName(m.op), ", got ", rank));
  }
  if (bytes != manifest_bytes) {
    return Invalid(what, absl::StrCat("manifest says ", manifest_bytes, " bytes but its tensors hold ", bytes));
  }
  return m;
}

StatusOr<SkillPack> ParseFile(const SafetensorsFile& file) {
  const auto& md = file.metadata();
  auto fmt = md.find(kPackFormatKey);
  if (fmt == md.end() || fmt->second != kPackFormatValue) {
    return absl::InvalidArgumentError(absl::StrCat("not a skillpack file (metadata 'format' is ",
                                                   fmt == md.end() ? "missing" : absl::StrCat("'", fmt->second, "'"),
                                                   ", want 'skillpack')"));
  }
  auto ver = md.find(kPackFormatVersionKey);
  if (ver == md.end()) return absl::InvalidArgumentError("metadata 'format_version' is missing");
  // Canonical decimal only: SimpleAtoi alone would take " 1", "+1" or "01".
  int64_t version = 0;
  const bool canonical = !ver->second.empty() && ver->second.size() <= 9 && ver->second[0] != '0' &&
                         ver->second.find_first_not_of("0123456789") == std::string::npos;
  if (!canonical || !absl::SimpleAtoi(ver->second, &version) || version < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata 'format_version' must be a positive integer, got '", ver->second, "'"));
  }
  if (version > kSkillPackFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat("made by a newer skillpack (format_version ", version, " > ",
                                                   kSkillPackFormatVersion, "); upgrade to read it"));
  }
  auto man = md.find(kPackManifestKey);
  if (man == md.end()) return absl::InvalidArgumentError("metadata 'manifest' is missing");
  ASSIGN_OR_RETURN(Json j, ParseJson(man->second, "manifest"));
  if (!j.is_object()) return absl::InvalidArgumentError("manifest: expected a JSON object");

  SkillPack pack;
  PackManifest& mf = pack.manifest;
  mf.format_version = static_cast<int>(version);
  ASSIGN_OR_RETURN(mf.name, GetField<std::string>(j, "name", "manifest"));
  ASSIGN_OR_RETURN(mf.version, GetField<std::string>(j, "version", "manifest"));
  ASSIGN_OR_RETURN(mf.base_fingerprint, GetField<std::string>(j, "base_fingerprint", "manifest"));
  ASSIGN_OR_RETURN(mf.description, GetFieldOr<std::string>(j, "description", "", "manifest"));
  ASSIGN_OR_RETURN(mf.created_at, GetFieldOr<std::string>(j, "created_at", "", "manifest"));
  if (auto tags = j.find("tags"); tags != j.end() && !tags->is_null()) {
    if (!tags->is_array()) return absl::InvalidArgumentError("manifest: field 'tags' must be an array of strings");
    for (const Json& t : *tags) {
      if (!t.is_string()) return absl::InvalidArgumentError("manifest: field 'tags' must be an array of strings");
      mf.tags.push_back(t.get<std::string>());
    }
  }
  if (auto prov = j.find("provenance"); prov != j.end() && !prov->is_null()) {
    if (!prov->is_object()) return absl::InvalidArgumentError("manifest: field 'provenance' must be an object");
    mf.provenance = *prov;
  }
  auto modules = j.find("modules");
  if (modules == j.end() || !modules->is_array()) {
    return absl::InvalidArgumentError("manifest: field 'modules' must be an array");
  }
  TensorSource src(file);
  for (size_t i = 0; i < modules->size(); ++i) {
    ASSIGN_OR_RETURN(ModuleDelta m, ReadModule(src, (*modules)[i], i));
    pack.modules.push_back(std::move(m));
  }
  if (std::string extra = src.FirstUntaken(); !extra.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected tensor '", extra, "' (not described by the manifest)"));
  }
  RETURN_IF_ERROR(ValidateSkillPack(pack));
  return pack;
}

StatusOr<SkillPack> ParseChecked(StatusOr<std::unique_ptr<SafetensorsFile>> file, absl::string_view what) {
  if (!file.ok()) return file.status();
  try {
    auto pack = ParseFile(**file);
    if (!pack.ok()) return Annotate(pack.status(), what);
    return pack;
  } catch (const std::exception& e) {
    return StatusFromException(e, what);
  }
}

}  // namespace

Status ValidateSkillPack(const SkillPack& pack) {
  try {
    const PackManifest& mf = pack.manifest;
    if (mf.format_version != kSkillPackFormatVersion) {
      return absl::InvalidArgumentError(absl::StrCat("manifest format_version is ", mf.format_version,
                                                     ", this build handles ", kSkillPackFormatVersion));
    }
    RETURN_IF_ERROR(ValidatePackName(mf.name));
    if (mf.version.empty()) return absl::InvalidArgumentError("manifest: empty version");
    if (!IsValidFingerprint(mf.base_fingerprint)) {
      return absl::InvalidArgumentError(absl::StrCat("manifest: base_fingerprint '", mf.base_fingerprint,
                                                     "' is not of the form sha256:<64 lowercase hex>"));
    }
    if (!mf.provenance.is_object()) return absl::InvalidArgumentError("manifest: provenance must be an object");
    for (size_t i = 0; i < pack.modules.size(); ++i) {
      const ModuleDelta& m = pack.modules[i];
      if (m.name.empty()) return absl::InvalidArgumentError(absl::StrCat("modules[", i, "]: empty name"));
      if (m.name.find("::") != std::string::npos) {
        return Invalid(ModuleWhat(m.name), "a module name must not contain '::'");
      }
      if (i > 0 && !(pack.modules[i - 1].name < m.name)) {
        return Invalid(ModuleWhat(m.name), absl::StrCat("modules must be sorted by name with no duplicates (after '",
                                                        pack.modules[i - 1].name, "')"));
      }
      RETURN_IF_ERROR(ValidateModule(m));
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return StatusFromException(e, "validating skillpack");
  }
}

StatusOr<std::string> SerializeSkillPack(const SkillPack& pack) {
  RETURN_IF_ERROR(Annotate(ValidateSkillPack(pack), absl::StrCat("pack '", pack.manifest.name, "'")));
  try {
    std::vector<Blob> blobs;
    Json modules = Json::array();
    for (const ModuleDelta& m : pack.modules) {
      const size_t first = blobs.size();
      ASSIGN_OR_RETURN(Json mj, EncodeModule(m, &blobs));
      int64_t bytes = 0;
      for (size_t i = first; i < blobs.size(); ++i) bytes += static_cast<int64_t>(blobs[i].bytes.size());
      mj["bytes"] = bytes;
      modules.push_back(std::move(mj));
    }
    Json manifest = ManifestJson(pack.manifest);
    manifest["modules"] = std::move(modules);
    SafetensorsWriter writer;
    writer.SetMetadata(kPackFormatKey, kPackFormatValue);
    writer.SetMetadata(kPackFormatVersionKey, std::to_string(kSkillPackFormatVersion));
    writer.SetMetadata(kPackManifestKey, manifest.dump());
    for (Blob& b : blobs) {
      RETURN_IF_ERROR(writer.Add(b.name, b.dtype, b.shape, b.bytes.data(), b.bytes.size()));
      b.bytes = std::string();
    }
    return writer.Serialize();
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("serializing pack '", pack.manifest.name, "'"));
  }
}

Status WriteSkillPack(const SkillPack& pack, const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, SerializeSkillPack(pack));
  return WriteFileAtomically(path, bytes);
}

StatusOr<SkillPack> ReadSkillPack(const std::string& path) { return ParseChecked(SafetensorsFile::Open(path), path); }

StatusOr<SkillPack> ParseSkillPack(std::string bytes, absl::string_view what) {
  return ParseChecked(SafetensorsFile::FromBuffer(std::move(bytes), std::string(what)), what);
}

Status CheckPackFitsBase(const SkillPack& pack, const ModelWeights& base, absl::string_view base_fingerprint) {
  const std::string& name = pack.manifest.name;
  if (pack.manifest.base_fingerprint != base_fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pack ", name, " was made for base ", pack.manifest.base_fingerprint, " but this base is ", base_fingerprint));
  }
  for (const ModuleDelta& m : pack.modules) {
    if (m.name == "lm_head.weight" && base.config().tie_word_embeddings) {
      return absl::FailedPreconditionError(
          absl::StrCat("pack ", name,
                       " has a delta for lm_head.weight, but this base ties lm_head to "
                       "model.embed_tokens.weight; such packs are refused (make the pack against the tied base, "
                       "whose delta lands on model.embed_tokens.weight)"));
    }
    const at::Tensor* t = base.Find(m.name);
    if (t == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("pack ", name, ": module '", m.name, "' is not a tensor of the base model"));
    }
    if (t->sizes().vec() != m.shape) {
      return absl::FailedPreconditionError(absl::StrCat("pack ", name, ": module '", m.name, "' has shape ",
                                                        ShapeString(m.shape), " but the base tensor is ",
                                                        ShapeString(t->sizes().vec())));
    }
  }
  return absl::OkStatus();
}

int64_t ModuleStoredBytes(const ModuleDelta& m) {
  auto quant = [](const QuantizedMatrix& q) -> int64_t {
    int64_t n = static_cast<int64_t>(PackedBytes(q.rows * q.cols, q.bits)) +
                static_cast<int64_t>(PackedBytes(q.rows * q.num_groups(), q.bits));
    if (q.scales.defined()) n += q.scales.numel() * (ScalesFitHalf(q.scales.to(at::kCPU)) ? 2 : 4);
    if (q.perm.defined()) n += q.cols * 4;
    return n;
  };
  switch (m.op) {
    case ModuleOp::kLowRank: {
      int64_t n = m.rank() * 4;
      for (const LowRankBand& b : m.bands) n += quant(b.u) + quant(b.vt);
      return n;
    }
    case ModuleOp::kSparse:
      return m.indices.numel() * (SparseIndicesFitI32(Numel(m.shape)) ? 4 : 8) + m.values.numel() * 2;
    case ModuleOp::kDenseQuant:
      return quant(m.dense);
    case ModuleOp::kDense:
      return Numel(m.shape) * 4;
  }
  return 0;
}

Json DescribePack(const SkillPack& pack) {
  Json j = ManifestJson(pack.manifest);
  j["format_version"] = pack.manifest.format_version;
  Json modules = Json::array();
  int64_t stored = 0, fp16 = 0;
  for (const ModuleDelta& m : pack.modules) {
    const int64_t bytes = ModuleStoredBytes(m);
    const int64_t half = Numel(m.shape) * 2;
    stored += bytes;
    fp16 += half;
    Json mj = {{"name", m.name}, {"op", ModuleOpName(m.op)}, {"shape", m.shape}, {"rank", m.rank()}};
    if (m.op == ModuleOp::kLowRank) {
      Json bands = Json::array();
      for (const LowRankBand& b : m.bands) {
        bands.push_back({{"rank_begin", b.rank_begin},
                         {"rank_end", b.rank_end},
                         {"width", b.width()},
                         {"bits", std::max(b.u.bits, b.vt.bits)},
                         {"u", QuantJson(b.u)},
                         {"vt", QuantJson(b.vt)}});
      }
      mj["bands"] = std::move(bands);
    } else if (m.op == ModuleOp::kDenseQuant) {
      mj["quant"] = QuantJson(m.dense);
    } else if (m.op == ModuleOp::kSparse) {
      mj["nnz"] = m.indices.numel();
      mj["density"] = static_cast<double>(m.indices.numel()) / static_cast<double>(Numel(m.shape));
    }
    mj["stored_bytes"] = bytes;
    mj["fp16_bytes"] = half;
    modules.push_back(std::move(mj));
  }
  j["modules"] = std::move(modules);
  j["num_modules"] = pack.modules.size();
  j["stored_bytes"] = stored;
  j["fp16_delta_bytes"] = fp16;
  j["compression_ratio"] = stored > 0 ? static_cast<double>(fp16) / static_cast<double>(stored) : 0.0;
  return j;
}

Status RoundScalesToHalf(QuantizedMatrix* q) {
  if (q->bits > 4 || !q->scales.defined() || q->scales.numel() == 0) return absl::OkStatus();
  try {
    const at::Tensor r = q->scales.to(at::kHalf).to(at::kFloat);
    if (at::isfinite(r).all().item<bool>() && (r >= kHalfMinNormal).all().item<bool>()) q->scales = r;
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return StatusFromException(e, "rounding scales to fp16");
  }
}

Status RoundScalesToHalf(SkillPack* pack) {
  for (ModuleDelta& m : pack->modules) {
    for (LowRankBand& b : m.bands) {
      RETURN_IF_ERROR(RoundScalesToHalf(&b.u));
      RETURN_IF_ERROR(RoundScalesToHalf(&b.vt));
    }
    if (m.op == ModuleOp::kDenseQuant) RETURN_IF_ERROR(RoundScalesToHalf(&m.dense));
  }
  return absl::OkStatus();
}

}  // namespace skillpack
