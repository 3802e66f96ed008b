#include "pack/compressor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <set>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/match.h"
#include "core/tensor_util.h"
#include "pack/allocate.h"
#include "pack/codec/bitpack.h"
#include "pack/codec/lowrank.h"
#include "pack/codec/quantize.h"
#include "pack/format.h"

namespace skillpack {
namespace {

// ---- Byte accounting (see EstimatePackBytes). Data bytes follow
// pack_format.cc's storage: codes and zero points bit-packed at the matrix's
// width, scales F16 for <= 4 bits after RoundScalesToHalf (F32 otherwise),
// permutations I32, sparse indices I32 (I64 past 2^31 entries), values F16. ----
// Header allowances: a safetensors header entry per tensor (its name is the
// module's name plus a suffix of up to 20 characters), the module's manifest
// entry, per low-rank band, and the manifest's fixed fields and provenance.
// Measured files stay well below them.
constexpr int64_t kPermEntryBytes = 4;
constexpr int64_t kHeaderPerTensor = 100;    // plus the module name's length
constexpr int64_t kManifestPerModule = 224;  // plus the module name's length
constexpr int64_t kManifestPerBand = 192;
constexpr int64_t kPackFixedBytes = 4096;
// Act-order is used only where the stored permutation costs at most this
// fraction of the matrix's code bytes.
constexpr double kMaxPermOverhead = 0.125;

const char* const kProjectionTypes[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

// Header bytes of one tensor / the manifest entry of a module named `name`.
int64_t TensorHeader(const std::string& name) { return kHeaderPerTensor + static_cast<int64_t>(name.size()); }
int64_t ModuleManifest(const std::string& name) { return kManifestPerModule + static_cast<int64_t>(name.size()); }

// Planned bytes of a quantised matrix of module `name` (scales assumed F16 at <= 4 bits).
int64_t QuantBytes(const std::string& name, int64_t rows, int64_t cols, int bits, int64_t group_size, bool perm) {
  const int64_t groups = rows * NumGroups(cols, group_size);
  return static_cast<int64_t>(PackedBytes(rows * cols, bits) + PackedBytes(groups, bits)) +
         groups * (bits <= 4 ? 2 : 4) + (perm ? cols * kPermEntryBytes : 0) + (perm ? 4 : 3) * TensorHeader(name);
}

int64_t QuantHeaderBytes(const std::string& name, const QuantizedMatrix& q) {
  return (q.perm.defined() ? 4 : 3) * TensorHeader(name);
}

bool WorthActOrder(int64_t rows, int64_t cols, int bits, const CompressionConfig& cfg) {
  if (!cfg.act_order) return false;
  const double code_bytes = static_cast<double>(rows) * cols * bits / 8.0;
  return static_cast<double>(cols * kPermEntryBytes) <= kMaxPermOverhead * code_bytes;
}

// A band of singular directions [begin, end) at `bits`.
struct BandSpec {
  int64_t begin, end;
  int bits;
};

// Splits rank k into bands by cumulative rank fraction. Each band is widened
// to at least min_width directions (taken from the bands after it, so the
// extra directions get more bits); a last band left narrower than that joins
// the band before it.
std::vector<BandSpec> MakeBands(int64_t k, const std::vector<std::pair<double, int>>& bands, int64_t min_width) {
  std::vector<BandSpec> out;
  int64_t prev = 0;
  for (size_t i = 0; i < bands.size() && prev < k; ++i) {
    int64_t end =
        i + 1 == bands.size() ? k : static_cast<int64_t>(std::ceil(bands[i].first * static_cast<double>(k) - 1e-9));
    end = std::min(k, std::max(end, prev + min_width));
    if (end <= prev) continue;
    out.push_back({prev, end, bands[i].second});
    prev = end;
  }
  if (out.size() > 1 && out.back().end - out.back().begin < min_width) {
    out[out.size() - 2].end = out.back().end;
    out.pop_back();
  }
  return out;
}

int64_t LowRankBytes(const std::string& name, int64_t m, int64_t n, int64_t k, const std::vector<BandSpec>& bands,
                     const CompressionConfig& cfg, bool calibrated) {
  int64_t bytes = k * 4 + TensorHeader(name) + ModuleManifest(name);
  for (const BandSpec& b : bands) {
    bytes += kManifestPerBand;
    const int64_t w = b.end - b.begin;
    bytes += QuantBytes(name, m, w, b.bits, cfg.group_size, calibrated && WorthActOrder(m, w, b.bits, cfg));
    bytes += QuantBytes(name, w, n, b.bits, cfg.group_size, calibrated && WorthActOrder(w, n, b.bits, cfg));
  }
  return bytes;
}

int64_t SparseBytes(const std::string& name, int64_t numel, int64_t nnz) {
  return nnz * ((numel <= (int64_t{1} << 31) ? 4 : 8) + 2) + 2 * TensorHeader(name) + ModuleManifest(name);
}

int64_t DenseBytes(const std::string& name, int64_t numel) {
  return numel * 4 + TensorHeader(name) + ModuleManifest(name);
}

std::string ShapeOf(const at::Tensor& t) { return ShapeString(t.sizes().vec()); }

// ---- Quantisation of one matrix. ----

// GPTQ with `hessian` when given and not all zero, else round-to-nearest.
StatusOr<QuantizedMatrix> Quantize(const at::Tensor& w, const at::Tensor* hessian, int bits,
                                   const CompressionConfig& cfg) {
  if (cfg.quantizer == "rtn" || hessian == nullptr || !hessian->defined() || !hessian->abs().max().gt(0).item<bool>()) {
    return QuantizeRtn(w, bits, cfg.group_size);
  }
  QuantizeOptions o;
  o.bits = bits;
  o.group_size = cfg.group_size;
  o.act_order = WorthActOrder(w.size(0), w.size(1), bits, cfg);
  o.damp_percent = cfg.damp_percent;
  return QuantizeGptq(w, *hessian, o);
}

// How one module is to be compressed.
struct ModulePlan {
  ModuleOp op = ModuleOp::kDense;
  double beta = 1.0;                          // kLowRank
  int64_t rank_cap = kNoRankCap;              // kLowRank: cap passed to TruncatedSvd
  std::vector<std::pair<double, int>> bands;  // kLowRank
  int64_t keep = 0;                           // kSparse: entries kept
  int bits = 0;                               // kDenseQuant: code width; 0: cfg.dense_bits
  bool whiten = false;                        // kLowRank: WhitenedTruncatedSvd on the normalised Hessian
};

StatusOr<ModuleDelta> CompressSparse(const std::string& name, const at::Tensor& delta, int64_t keep) {
  ModuleDelta m;
  m.name = name;
  m.op = ModuleOp::kSparse;
  m.shape = delta.sizes().vec();
  at::Tensor flat = delta.reshape({-1}).to(at::kFloat);
  const int64_t nnz = flat.ne(0).sum().item<int64_t>();
  keep = std::max<int64_t>(0, std::min(keep, nnz));
  at::Tensor idx = std::get<1>(at::topk(flat.abs(), keep, 0, /*largest=*/true, /*sorted=*/false));
  idx = std::get<0>(at::sort(idx));
  m.indices = idx.to(at::kLong).cpu().contiguous();
  m.values = flat.index_select(0, idx).to(at::kHalf).cpu().contiguous();
  return m;
}

StatusOr<ModuleDelta> CompressDenseQuant(const std::string& name, const at::Tensor& delta, const CompressionConfig& cfg,
                                         const at::Tensor* h, int bits) {
  ModuleDelta m;
  m.name = name;
  m.op = ModuleOp::kDenseQuant;
  m.shape = delta.sizes().vec();
  ASSIGN_OR_RETURN(m.dense, Quantize(delta.to(at::kFloat), h, bits > 0 ? bits : cfg.dense_bits, cfg));
  return m;
}

// The input Hessian scaled to mean diagonal 1 (so that for white inputs the
// weighted error equals the Frobenius error and modules with and without
// calibration compare), or undefined when there is none or the input is dead.
at::Tensor NormalisedHessian(const at::Tensor* h, int64_t in) {
  if (h == nullptr || !h->defined() || h->dim() != 2 || h->size(0) != in || h->size(1) != in) return at::Tensor();
  const double tr = at::trace(h->to(at::kDouble)).item<double>();
  if (!(tr > 0) || !std::isfinite(tr)) return at::Tensor();
  return (h->to(at::kFloat).cpu() * static_cast<float>(static_cast<double>(in) / tr)).contiguous();
}

StatusOr<ModuleDelta> CompressLowRank(const std::string& name, const at::Tensor& delta, const ModulePlan& plan,
                                      const CompressionConfig& cfg, const at::Tensor* h) {
  const int64_t m_out = delta.size(0), n_in = delta.size(1);
  const int64_t lim = static_cast<int64_t>(std::floor(cfg.dense_rank_fraction * std::min(m_out, n_in)));
  int64_t cap = lim + 1;  // one past the low-rank limit: tells "near full rank" apart
  if (plan.rank_cap >= 0) cap = std::min(cap, plan.rank_cap);
  LowRank lr;
  const at::Tensor hn = plan.whiten ? NormalisedHessian(h, n_in) : at::Tensor();
  if (hn.defined()) {
    ASSIGN_OR_RETURN(lr, WhitenedTruncatedSvd(delta.to(at::kFloat), hn, plan.beta, cap));
  } else {
    ASSIGN_OR_RETURN(lr, TruncatedSvd(delta.to(at::kFloat), plan.beta, cap));
  }
  const int64_t k = lr.rank();
  if (k > lim) return CompressDenseQuant(name, delta, cfg, h, cfg.dense_bits);
  ModuleDelta m;
  m.name = name;
  m.op = ModuleOp::kLowRank;
  m.shape = delta.sizes().vec();
  m.sigma = lr.s.to(at::kFloat).cpu().contiguous();
  at::Tensor hz_base;  // H_x in fp64 for the U Hessians
  const bool calibrated = cfg.quantizer == "gptq" && h != nullptr && h->defined() && h->abs().max().gt(0).item<bool>();
  if (calibrated) hz_base = h->to(at::kDouble);
  for (const BandSpec& b : MakeBands(k, plan.bands, cfg.min_band_width)) {
    LowRankBand band;
    band.rank_begin = b.begin;
    band.rank_end = b.end;
    const int64_t w = b.end - b.begin;
    at::Tensor vt = lr.v.narrow(1, b.begin, w).t().contiguous();  // [w, in]
    ASSIGN_OR_RETURN(band.vt, Quantize(vt, calibrated ? h : nullptr, b.bits, cfg));
    at::Tensor u = lr.u.narrow(1, b.begin, w).contiguous();  // [out, w]
    at::Tensor hz;
    if (calibrated) {
      // Inputs of U_b are z = Σ_b V̂ᵀ_b x, so H_z = (Σ_b V̂ᵀ_b) H_x (Σ_b V̂ᵀ_b)ᵀ.
      at::Tensor sv = (lr.s.narrow(0, b.begin, w).unsqueeze(1) * Dequantize(band.vt)).to(at::kDouble);
      hz = at::matmul(at::matmul(sv, hz_base), sv.t());
      hz = ((hz + hz.t()) * 0.5).to(at::kFloat);
    }
    ASSIGN_OR_RETURN(band.u, Quantize(u, calibrated ? &hz : nullptr, b.bits, cfg));
    m.bands.push_back(std::move(band));
  }
  return m;
}

// Compresses `delta` by `plan`; omitted when Δ is all zero.
StatusOr<CompressedModule> CompressWithPlan(const std::string& name, const at::Tensor& delta, const ModulePlan& plan,
                                            const CompressionConfig& cfg, const at::Tensor* h) {
  CompressedModule out;
  if (!at::isfinite(delta).all().item<bool>()) {
    return absl::InvalidArgumentError(absl::StrCat("delta of '", name, "' has non-finite entries"));
  }
  if (!delta.ne(0).any().item<bool>() || (plan.op == ModuleOp::kLowRank && plan.rank_cap == 0)) {
    out.omitted = true;
    return out;
  }
  if (h != nullptr && h->defined() && plan.op != ModuleOp::kSparse && plan.op != ModuleOp::kDense) {
    const int64_t in = delta.size(1);
    if (h->dim() != 2 || h->size(0) != in || h->size(1) != in) {
      return absl::InvalidArgumentError(absl::StrCat("calibration Hessian of '", name, "' has shape ", ShapeOf(*h),
                                                     ", expected [", in, ", ", in, "]"));
    }
  }
  switch (plan.op) {
    case ModuleOp::kSparse: {
      ASSIGN_OR_RETURN(out.delta, CompressSparse(name, delta, plan.keep));
      break;
    }
    case ModuleOp::kLowRank: {
      ASSIGN_OR_RETURN(out.delta, CompressLowRank(name, delta, plan, cfg, h));
      break;
    }
    case ModuleOp::kDenseQuant: {
      ASSIGN_OR_RETURN(out.delta, CompressDenseQuant(name, delta, cfg, h, plan.bits));
      break;
    }
    case ModuleOp::kDense: {
      out.delta.name = name;
      out.delta.op = ModuleOp::kDense;
      out.delta.shape = delta.sizes().vec();
      out.delta.full = delta.to(at::kFloat).cpu().contiguous();
      break;
    }
  }
  return out;
}

// The plan cfg's α / β give a module.
ModulePlan DefaultPlan(const std::string& name, const at::Tensor& delta, const CompressionConfig& cfg) {
  ModulePlan plan;
  const std::string type = ProjectionType(name);
  if (IsEmbeddingModule(name) && delta.dim() == 2) {
    plan.op = ModuleOp::kSparse;
    plan.keep = std::llround(cfg.alpha * static_cast<double>(delta.numel()));
  } else if (!type.empty() && delta.dim() == 2) {
    plan.op = ModuleOp::kLowRank;
    auto it = cfg.beta.find(type);
    plan.beta = it == cfg.beta.end() ? CompressionConfig().beta.at("q_proj") : it->second;
    plan.rank_cap = cfg.max_rank;
    plan.bands = cfg.bands;
  }
  return plan;
}

// ---- Budget mode. ----

// One module's candidate settings for the allocator (pack/allocate.h): the
// plan, its estimated bytes in the file and its measured output error.
struct ModuleCandidates {
  std::string name;
  std::vector<ModulePlan> plans;
  std::vector<AllocOption> options;  // parallel to plans
  // kSparse modules: entries² sorted descending as prefix sums (prefix[i] =
  // energy of the i largest), for topping up the kept count with spare bytes.
  std::vector<double> sparse_prefix;
  int64_t numel = 0;
};

// Output error of a module's reconstruction error `e` [out, in]:
// E_x ‖e x‖² ∝ tr(e H eᵀ) with the normalised Hessian, else ‖e‖²_F.
double OutputError(const at::Tensor& e, const at::Tensor& hn) {
  if (!hn.defined()) return e.to(at::kDouble).pow(2).sum().item<double>();
  const double v = (at::matmul(e.to(at::kDouble), hn.to(at::kDouble)) * e.to(at::kDouble)).sum().item<double>();
  return std::max(0.0, v);
}

at::Tensor RtnRoundTrip(const at::Tensor& w, int bits, int64_t group_size) {
  StatusOr<QuantizedMatrix> q = QuantizeRtn(w.contiguous(), bits, group_size);
  TORCH_CHECK(q.ok(), std::string(q.status().message()));
  return Dequantize(*q).to(at::kFloat);
}

std::vector<double> Prefix(const at::Tensor& squares_desc) {
  at::Tensor c = at::cumsum(squares_desc.to(at::kDouble).cpu(), 0).contiguous();
  std::vector<double> out(c.numel() + 1, 0.0);
  std::copy(c.data_ptr<double>(), c.data_ptr<double>() + c.numel(), out.begin() + 1);
  return out;
}

// Ranks tried for a low-rank module with ranks 1..lim allowed: all of them
// up to 64, else about 40 geometrically spaced ones and lim.
std::vector<int64_t> RankGrid(int64_t lim) {
  std::vector<int64_t> out;
  if (lim <= 64) {
    for (int64_t r = 1; r <= lim; ++r) out.push_back(r);
    return out;
  }
  const double step = std::pow(static_cast<double>(lim), 1.0 / 40.0);
  double x = 1;
  while (x < lim) {
    const int64_t r = static_cast<int64_t>(std::llround(x));
    if (out.empty() || r > out.back()) out.push_back(r);
    x *= step;
  }
  out.push_back(lim);
  return out;
}

// Band layouts tried per rank besides cfg.bands: uniform 8 / 4 / 3 / 2 bits
// and mixed ones giving the top directions more bits.
std::vector<std::vector<std::pair<double, int>>> BandPresets(const CompressionConfig& cfg) {
  std::vector<std::vector<std::pair<double, int>>> all = {cfg.bands,
                                                          {{1.0, 8}},
                                                          {{1.0, 4}},
                                                          {{1.0, 3}},
                                                          {{1.0, 2}},
                                                          {{0.2, 8}, {1.0, 4}},
                                                          {{0.25, 4}, {1.0, 3}},
                                                          {{0.25, 4}, {1.0, 2}}};
  std::vector<std::vector<std::pair<double, int>>> out;
  for (auto& b : all) {
    if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(std::move(b));
  }
  return out;
}

// Number of sparse-entry counts tried per embedding module (geometric grid;
// the allocator's leftover bytes top the count up exactly afterwards).
constexpr int kSparseGridPoints = 64;
constexpr int kDenseBitsTried[] = {8, 4, 3, 2};

// Every candidate setting of module `name` with its bytes and measured error.
// Low-rank modules: each rank of RankGrid × each band layout (factors
// round-tripped through RTN, error of the reconstruction), dense
// quantisation at 8 / 4 / 3 / 2 bits, or nothing. Embeddings: the k largest
// entries for k on a grid, dense quantisation at 8 / 4 bits (the dense
// fallback where sparse storage costs more), or nothing. Other tensors: dense.
// `gptq`: the module will be quantised by GPTQ (act-order permutations may be stored).
StatusOr<ModuleCandidates> MakeCandidates(const std::string& name, const at::Tensor& delta,
                                          const CompressionConfig& cfg, const at::Tensor* hessian, bool gptq) {
  ModuleCandidates c;
  c.name = name;
  c.numel = delta.numel();
  at::Tensor d = delta.to(at::kFloat).contiguous();
  if (!at::isfinite(d).all().item<bool>()) {
    return absl::InvalidArgumentError(absl::StrCat("delta of '", name, "' has non-finite entries"));
  }
  const ModulePlan def = DefaultPlan(name, d, cfg);
  auto add = [&](const ModulePlan& p, int64_t bytes, double error) {
    c.plans.push_back(p);
    c.options.push_back({bytes, error});
  };
  if (!d.ne(0).any().item<bool>()) {  // omitted whatever the plan
    add(def, 0, 0.0);
    return c;
  }
  if (def.op == ModuleOp::kDense) {
    add(def, DenseBytes(name, d.numel()), 0.0);
    return c;
  }
  ModulePlan omit;
  omit.op = ModuleOp::kLowRank;
  omit.rank_cap = 0;  // CompressWithPlan omits the module
  const int64_t rows = d.size(0), cols = d.size(1);
  const at::Tensor hn = def.op == ModuleOp::kLowRank ? NormalisedHessian(hessian, cols) : at::Tensor();
  add(omit, 0, OutputError(d, hn));
  const std::vector<int> dense_bits = def.op == ModuleOp::kSparse
                                          ? std::vector<int>{8, 4}
                                          : std::vector<int>(std::begin(kDenseBitsTried), std::end(kDenseBitsTried));
  for (int bits : dense_bits) {
    ModulePlan p;
    p.op = ModuleOp::kDenseQuant;
    p.bits = bits;
    const bool perm = gptq && hn.defined() && WorthActOrder(rows, cols, bits, cfg);
    add(p, QuantBytes(name, rows, cols, bits, cfg.group_size, perm) + ModuleManifest(name),
        OutputError(d - RtnRoundTrip(d, bits, cfg.group_size), hn));
  }
  if (def.op == ModuleOp::kSparse) {
    at::Tensor sq = std::get<0>(at::sort(d.reshape({-1}).pow(2).to(at::kDouble), 0, /*descending=*/true));
    c.sparse_prefix = Prefix(sq);
    const double total = c.sparse_prefix.back();
    const int64_t nnz = d.ne(0).sum().item<int64_t>();
    std::vector<int64_t> grid;
    for (int i = 0; i <= kSparseGridPoints; ++i) {
      const int64_t k = std::llround(std::pow(static_cast<double>(nnz), static_cast<double>(i) / kSparseGridPoints));
      if (k >= 1 && (grid.empty() || k > grid.back())) grid.push_back(k);
    }
    for (int64_t k : grid) {
      ModulePlan p;
      p.op = ModuleOp::kSparse;
      p.keep = k;
      add(p, SparseBytes(name, d.numel(), k), std::max(0.0, total - c.sparse_prefix[k]));
    }
    return c;
  }
  // Low rank.
  int64_t lim = static_cast<int64_t>(std::floor(cfg.dense_rank_fraction * std::min(rows, cols)));
  if (cfg.max_rank >= 0) lim = std::min(lim, cfg.max_rank);
  if (lim < 1) return c;
  ASSIGN_OR_RETURN(LowRank lr, TruncatedSvd(d, 1.0, lim));
  lim = std::min(lim, lr.rank());
  // With calibration also the activation-aware factors (lowrank.h), which
  // minimise this very error before rounding; each rank and layout keeps
  // whichever of the two measures lower once rounded (same bytes).
  std::optional<LowRank> whitened;
  if (hn.defined() && cfg.whiten) {
    ASSIGN_OR_RETURN(LowRank w, WhitenedTruncatedSvd(d, hn, 1.0, lim));
    whitened = std::move(w);
  }
  // The output error of factors f at rank bands `bands`, rounded to nearest.
  auto error_of = [&](const LowRank& f, const std::vector<BandSpec>& bands) {
    at::Tensor recon = at::zeros_like(d);
    for (const BandSpec& b : bands) {
      const int64_t w = b.end - b.begin;
      at::Tensor vt = RtnRoundTrip(f.v.narrow(1, b.begin, w).t().contiguous(), b.bits, cfg.group_size);
      at::Tensor u = RtnRoundTrip(f.u.narrow(1, b.begin, w).contiguous(), b.bits, cfg.group_size);
      recon.add_(at::matmul(u * f.s.narrow(0, b.begin, w).unsqueeze(0), vt));
    }
    return OutputError(d - recon, hn);
  };
  for (const auto& layout : BandPresets(cfg)) {
    for (int64_t r : RankGrid(lim)) {
      const std::vector<BandSpec> bands = MakeBands(r, layout, cfg.min_band_width);
      ModulePlan p;
      p.op = ModuleOp::kLowRank;
      p.beta = 1.0;  // with the cap: exactly rank r
      p.rank_cap = r;
      p.bands = layout;
      double error = error_of(lr, bands);
      if (whitened && r <= whitened->rank()) {
        const double e = error_of(*whitened, bands);
        if (e < error) {
          error = e;
          p.whiten = true;
        }
      }
      add(p, LowRankBytes(name, rows, cols, r, bands, cfg, gptq && hn.defined()), error);
    }
  }
  return c;
}

// A key naming what a plan produces for module `name`, for reusing compressed
// modules across the budget loop's attempts.
std::string PlanKey(const std::string& name, const ModulePlan& p) {
  std::string key = absl::StrCat(name, "|", static_cast<int>(p.op), "|", p.bits, "|", p.keep, "|", p.rank_cap, "|",
                                 p.beta, "|", p.whiten);
  for (const auto& [f, b] : p.bands) absl::StrAppend(&key, "|", f, ":", b);
  return key;
}

Json BandsToJson(const std::vector<std::pair<double, int>>& bands) {
  Json j = Json::array();
  for (const auto& [f, b] : bands) j.push_back({f, b});
  return j;
}

Status CheckBands(const std::vector<std::pair<double, int>>& bands, absl::string_view key) {
  if (bands.empty()) return absl::InvalidArgumentError(absl::StrCat(key, ": at least one band is needed"));
  double prev = 0;
  for (size_t i = 0; i < bands.size(); ++i) {
    const auto& [f, b] = bands[i];
    if (!(f > prev && f <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, "[", i, "]: fractions must increase strictly within (0, 1], got ", f));
    }
    if (!IsSupportedCodeWidth(b)) {
      return absl::InvalidArgumentError(absl::StrCat(key, "[", i, "]: bits must be 2, 3, 4 or 8, got ", b));
    }
    prev = f;
  }
  if (bands.back().first != 1.0) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": the last band's fraction must be 1"));
  }
  return absl::OkStatus();
}

template <typename T>
Status Read(const Json& j, const char* key, T* out) {
  ASSIGN_OR_RETURN(*out, GetFieldOr<T>(j, key, *out, "compression config"));
  return absl::OkStatus();
}

}  // namespace

std::string ProjectionType(absl::string_view name) {
  for (const char* t : kProjectionTypes) {
    if (absl::EndsWith(name, absl::StrCat(".", t, ".weight")) &&
        (absl::StrContains(name, ".self_attn.") || absl::StrContains(name, ".mlp."))) {
      return t;
    }
  }
  return "";
}

bool IsEmbeddingModule(absl::string_view name) {
  return name == "model.embed_tokens.weight" || name == "lm_head.weight";
}

Status ValidateCompressionConfig(const CompressionConfig& cfg) {
  if (!(cfg.alpha > 0 && cfg.alpha <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("alpha must be in (0, 1], got ", cfg.alpha));
  }
  for (const auto& [type, b] : cfg.beta) {
    if (std::find(std::begin(kProjectionTypes), std::end(kProjectionTypes), type) == std::end(kProjectionTypes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("beta: unknown module type '", type,
                       "' (want q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"));
    }
    if (!(b > 0 && b <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat("beta.", type, " must be in (0, 1], got ", b));
    }
  }
  RETURN_IF_ERROR(CheckBands(cfg.bands, "bands"));
  if (cfg.min_band_width < 1) {
    return absl::InvalidArgumentError(absl::StrCat("min_band_width must be >= 1, got ", cfg.min_band_width));
  }
  if (cfg.group_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("group_size must be >= 1, got ", cfg.group_size));
  }
  if (!(cfg.damp_percent >= 0 && std::isfinite(cfg.damp_percent))) {
    return absl::InvalidArgumentError(absl::StrCat("damp_percent must be >= 0, got ", cfg.damp_percent));
  }
  if (!(cfg.dense_rank_fraction > 0 && cfg.dense_rank_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dense_rank_fraction must be in (0, 1], got ", cfg.dense_rank_fraction));
  }
  if (!IsSupportedCodeWidth(cfg.dense_bits)) {
    return absl::InvalidArgumentError(absl::StrCat("dense_bits must be 2, 3, 4 or 8, got ", cfg.dense_bits));
  }
  if (cfg.max_rank < -1) {
    return absl::InvalidArgumentError(absl::StrCat("max_rank must be >= 0 or -1 (no cap), got ", cfg.max_rank));
  }
  if (cfg.quantizer != "gptq" && cfg.quantizer != "rtn") {
    return absl::InvalidArgumentError(absl::StrCat("quantizer must be gptq or rtn, got '", cfg.quantizer, "'"));
  }
  if (cfg.target_ratio && cfg.target_bytes) {
    return absl::InvalidArgumentError("give at most one of target_ratio and target_bytes");
  }
  if (cfg.target_ratio && !(*cfg.target_ratio > 0 && std::isfinite(*cfg.target_ratio))) {
    return absl::InvalidArgumentError(absl::StrCat("target_ratio must be > 0, got ", *cfg.target_ratio));
  }
  if (cfg.target_bytes && *cfg.target_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("target_bytes must be > 0, got ", *cfg.target_bytes));
  }
  return absl::OkStatus();
}

StatusOr<CompressionConfig> ParseCompressionConfig(const Json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("compression config must be a JSON object");
  static const std::set<std::string> kKeys = {"alpha",      "beta",      "bands",        "min_band_width",
                                              "group_size", "act_order", "damp_percent", "dense_rank_fraction",
                                              "dense_bits", "max_rank",  "target_ratio", "target_bytes",
                                              "quantizer",  "whiten"};
  for (const auto& item : j.items()) {
    if (!kKeys.count(item.key())) {
      return absl::InvalidArgumentError(absl::StrCat("compression config: unknown key '", item.key(), "'"));
    }
  }
  CompressionConfig cfg;
  RETURN_IF_ERROR(Read(j, "alpha", &cfg.alpha));
  if (j.contains("beta")) {
    const Json& b = j["beta"];
    if (b.is_number()) {
      for (auto& [type, v] : cfg.beta) v = b.get<double>();
    } else if (b.is_object()) {
      for (const auto& item : b.items()) {
        if (!item.value().is_number()) {
          return absl::InvalidArgumentError(
              absl::StrCat("compression config: field 'beta.", item.key(), "' must be a number"));
        }
        cfg.beta[item.key()] = item.value().get<double>();
      }
    } else {
      return absl::InvalidArgumentError(
          "compression config: field 'beta' must be a number or an object by module type");
    }
  }
  if (j.contains("bands")) {
    const Json& b = j["bands"];
    if (!b.is_array()) return absl::InvalidArgumentError("compression config: field 'bands' must be an array");
    cfg.bands.clear();
    for (size_t i = 0; i < b.size(); ++i) {
      if (!b[i].is_array() || b[i].size() != 2 || !b[i][0].is_number() || !b[i][1].is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat("compression config: bands[", i, "] must be [fraction, bits]"));
      }
      cfg.bands.emplace_back(b[i][0].get<double>(), b[i][1].get<int>());
    }
  }
  RETURN_IF_ERROR(Read(j, "min_band_width", &cfg.min_band_width));
  RETURN_IF_ERROR(Read(j, "group_size", &cfg.group_size));
  RETURN_IF_ERROR(Read(j, "act_order", &cfg.act_order));
  RETURN_IF_ERROR(Read(j, "damp_percent", &cfg.damp_percent));
  RETURN_IF_ERROR(Read(j, "dense_rank_fraction", &cfg.dense_rank_fraction));
  RETURN_IF_ERROR(Read(j, "dense_bits", &cfg.dense_bits));
  RETURN_IF_ERROR(Read(j, "max_rank", &cfg.max_rank));
  RETURN_IF_ERROR(Read(j, "quantizer", &cfg.quantizer));
  RETURN_IF_ERROR(Read(j, "whiten", &cfg.whiten));
  if (j.contains("target_ratio") && !j["target_ratio"].is_null()) {
    ASSIGN_OR_RETURN(double r, GetField<double>(j, "target_ratio", "compression config"));
    cfg.target_ratio = r;
  }
  if (j.contains("target_bytes") && !j["target_bytes"].is_null()) {
    ASSIGN_OR_RETURN(int64_t b, GetField<int64_t>(j, "target_bytes", "compression config"));
    cfg.target_bytes = b;
  }
  Status s = ValidateCompressionConfig(cfg);
  if (!s.ok()) return Annotate(s, "compression config");
  return cfg;
}

Json CompressionConfigToJson(const CompressionConfig& cfg) {
  Json j;
  j["alpha"] = cfg.alpha;
  j["beta"] = Json::object();
  for (const auto& [type, b] : cfg.beta) j["beta"][type] = b;
  j["bands"] = BandsToJson(cfg.bands);
  j["min_band_width"] = cfg.min_band_width;
  j["group_size"] = cfg.group_size;
  j["act_order"] = cfg.act_order;
  j["damp_percent"] = cfg.damp_percent;
  j["dense_rank_fraction"] = cfg.dense_rank_fraction;
  j["dense_bits"] = cfg.dense_bits;
  j["max_rank"] = cfg.max_rank;
  j["quantizer"] = cfg.quantizer;
  j["whiten"] = cfg.whiten;
  if (cfg.target_ratio) j["target_ratio"] = *cfg.target_ratio;
  if (cfg.target_bytes) j["target_bytes"] = *cfg.target_bytes;
  return j;
}

int64_t EstimateModuleBytes(const ModuleDelta& m) {
  int64_t header = ModuleManifest(m.name);
  switch (m.op) {
    case ModuleOp::kLowRank:
      header += TensorHeader(m.name);
      for (const LowRankBand& b : m.bands) {
        header += kManifestPerBand + QuantHeaderBytes(m.name, b.u) + QuantHeaderBytes(m.name, b.vt);
      }
      break;
    case ModuleOp::kSparse:
      header += 2 * TensorHeader(m.name);
      break;
    case ModuleOp::kDenseQuant:
      header += QuantHeaderBytes(m.name, m.dense);
      break;
    case ModuleOp::kDense:
      header += TensorHeader(m.name);
      break;
  }
  return ModuleStoredBytes(m) + header;
}

int64_t EstimatePackBytes(const SkillPack& pack) {
  int64_t bytes = kPackFixedBytes;
  for (const ModuleDelta& m : pack.modules) bytes += EstimateModuleBytes(m);
  return bytes;
}

int64_t Fp16DeltaBytes(const ModelWeights& w) {
  int64_t n = 0;
  for (const auto& [name, t] : w.tensors()) n += t.numel();
  return 2 * n;
}

StatusOr<CompressedModule> CompressModule(const std::string& name, const at::Tensor& delta,
                                          const CompressionConfig& cfg, const at::Tensor* input_hessian) {
  RETURN_IF_ERROR(ValidateCompressionConfig(cfg));
  try {
    c10::InferenceMode guard;
    return CompressWithPlan(name, delta, DefaultPlan(name, delta, cfg), cfg, input_hessian);
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("compressing '", name, "'"));
  }
}

namespace {

// The manifest a budget is measured with when the caller gives none: fields
// of typical length (a 16-character name, a real fingerprint's length, a
// creation time) so the estimate is close to what the caller will write.
PackManifest PlaceholderManifest() {
  PackManifest mf;
  mf.name = "budget-pack-0000";
  mf.base_fingerprint = absl::StrCat("sha256:", std::string(64, '0'));
  mf.created_at = "1970-01-01T00:00:00Z";
  return mf;
}

// `manifest` with provenance["compression"] = prov.
PackManifest WithCompression(const PackManifest& manifest, const Json& prov) {
  PackManifest mf = manifest;
  if (!mf.provenance.is_object()) mf.provenance = Json::object();
  mf.provenance["compression"] = prov;
  return mf;
}

StatusOr<SkillPack> CompressDeltaImpl(const ModelWeights& base, const ModelWeights& tuned, const CompressionConfig& cfg,
                                      const CalibrationStats* calib,
                                      const std::function<void(const CompressProgress&)>& progress,
                                      const PackManifest* manifest) {
  RETURN_IF_ERROR(ValidateCompressionConfig(cfg));
  for (const auto& [name, t] : base.tensors()) {
    const at::Tensor* o = tuned.Find(name);
    if (o == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("tuned model lacks tensor '", name, "'"));
    }
    if (!o->sizes().equals(t.sizes())) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ", ShapeOf(*o),
                                                     " in the tuned model but ", ShapeOf(t), " in the base"));
    }
  }
  for (const auto& [name, t] : tuned.tensors()) {
    if (base.Find(name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("tuned model has tensor '", name, "' the base lacks"));
    }
  }
  const bool calibrated = calib != nullptr && !calib->hessians.empty();
  try {
    c10::InferenceMode guard;
    auto delta_of = [&](const std::string& name, const at::Tensor& b) {
      return tuned.Find(name)->to(at::kFloat) - b.to(at::kFloat);
    };
    Json prov;
    prov["config"] = CompressionConfigToJson(cfg);
    prov["calibration"] = calibrated ? Json{{"sequences", calib->num_sequences}, {"tokens", calib->num_tokens}}
                                     : Json("none (round-to-nearest)");
    const int64_t fp16_bytes = Fp16DeltaBytes(base);
    prov["fp16_delta_bytes"] = fp16_bytes;

    // Compressed modules by PlanKey, reused across the budget loop's attempts.
    std::map<std::string, CompressedModule> cache;
    // Compresses every tensor by `plans` (cfg's α / β where a tensor has none).
    auto compress_all = [&](const std::map<std::string, ModulePlan>& plans) -> StatusOr<SkillPack> {
      SkillPack pack;
      const int64_t total = static_cast<int64_t>(base.tensors().size());
      int64_t index = 0;
      for (const auto& [name, b] : base.tensors()) {
        ++index;
        const auto t0 = std::chrono::steady_clock::now();
        at::Tensor delta = delta_of(name, b);
        auto it = plans.find(name);
        ModulePlan plan = it != plans.end() ? it->second : DefaultPlan(name, delta, cfg);
        const at::Tensor* h = calibrated ? calib->Find(name) : nullptr;
        const std::string key = PlanKey(name, plan);
        auto hit = cache.find(key);
        if (hit == cache.end()) {
          StatusOr<CompressedModule> cm = CompressWithPlan(name, delta, plan, cfg, h);
          if (!cm.ok()) return Annotate(cm.status(), absl::StrCat("compressing '", name, "'"));
          hit = cache.emplace(key, std::move(*cm)).first;
        }
        const CompressedModule& cm = hit->second;
        CompressProgress pr;
        pr.module = name;
        pr.index = index;
        pr.total = total;
        if (cm.omitted) {
          pr.op = "zero";
        } else {
          pr.op = ModuleOpName(cm.delta.op);
          pr.rank = cm.delta.rank();
          pack.modules.push_back(cm.delta);
          SkillPack one;  // scales as they will be stored, for the byte count
          one.modules.push_back(pack.modules.back());
          RETURN_IF_ERROR(RoundScalesToHalf(&one));
          pr.bytes = EstimateModuleBytes(one.modules[0]);
        }
        pr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (progress) progress(pr);
      }
      RETURN_IF_ERROR(RoundScalesToHalf(&pack));
      std::sort(pack.modules.begin(), pack.modules.end(),
                [](const ModuleDelta& a, const ModuleDelta& b) { return a.name < b.name; });
      return pack;
    };

    if (!cfg.target_ratio && !cfg.target_bytes) {
      ASSIGN_OR_RETURN(SkillPack pack, compress_all({}));
      const int64_t est = EstimatePackBytes(pack);
      prov["estimated_bytes"] = est;
      prov["estimated_ratio"] = static_cast<double>(est) / fp16_bytes;
      if (manifest != nullptr) {
        pack.manifest = WithCompression(*manifest, prov);
      } else {
        pack.manifest.provenance["compression"] = prov;
      }
      return pack;
    }

    // Budget mode: per-module candidates, the allocation, then the file
    // measured (serialised with the manifest) and the next attempt's
    // allocation budget and sparse top-up chosen from it (BudgetSearch),
    // until the file lands in [98%, 100%] of the target.
    const int64_t target =
        cfg.target_bytes ? *cfg.target_bytes : static_cast<int64_t>(std::floor(*cfg.target_ratio * fp16_bytes));
    std::vector<ModuleCandidates> cands;
    std::vector<std::vector<AllocOption>> options;
    int64_t smallest_plan = 0;
    for (const auto& [name, b] : base.tensors()) {
      const at::Tensor* h = calibrated ? calib->Find(name) : nullptr;
      ASSIGN_OR_RETURN(ModuleCandidates c,
                       MakeCandidates(name, delta_of(name, b), cfg, h, calibrated && cfg.quantizer == "gptq"));
      int64_t least = c.options[0].bytes;
      for (const AllocOption& o : c.options) least = std::min(least, o.bytes);
      smallest_plan += least;
      options.push_back(c.options);
      cands.push_back(std::move(c));
    }
    const PackManifest mf = manifest != nullptr ? *manifest : PlaceholderManifest();
    BudgetSearch search(target, target - kPackFixedBytes);
    std::optional<SkillPack> best;
    constexpr int kAttempts = 8;
    for (int attempt = 1; attempt <= kAttempts; ++attempt) {
      const int64_t plan_budget = search.plan();
      const bool smallest = plan_budget <= smallest_plan;
      ASSIGN_OR_RETURN(Allocation alloc, AllocateBudget(options, std::max(plan_budget, smallest_plan)));
      std::map<std::string, ModulePlan> plans;
      std::map<std::string, int64_t> ops;
      const int64_t slack = std::max<int64_t>(0, std::max<int64_t>(0, plan_budget - alloc.bytes) + search.top_up());
      // Spare bytes go to the sparse module whose next entry is the largest.
      ModuleCandidates* top = nullptr;
      int64_t top_keep = 0;
      double top_next = 0;
      for (size_t i = 0; i < cands.size(); ++i) {
        ModulePlan p = cands[i].plans[alloc.choice[i]];
        if (p.op == ModuleOp::kSparse && p.keep + 1 < static_cast<int64_t>(cands[i].sparse_prefix.size())) {
          const double next = cands[i].sparse_prefix[p.keep + 1] - cands[i].sparse_prefix[p.keep];
          if (next > top_next) {
            top = &cands[i];
            top_keep = p.keep;
            top_next = next;
          }
        }
        plans[cands[i].name] = p;
      }
      if (top != nullptr) {
        const int64_t per_entry = SparseBytes(top->name, top->numel, 1) - SparseBytes(top->name, top->numel, 0);
        const int64_t nnz = static_cast<int64_t>(top->sparse_prefix.size()) - 1;
        const int64_t keep = std::min(nnz, top_keep + slack / per_entry);
        plans[top->name].keep = keep;
        alloc.bytes += (keep - top_keep) * per_entry;
        alloc.error -= top->sparse_prefix[keep] - top->sparse_prefix[top_keep];
      }
      ASSIGN_OR_RETURN(SkillPack pack, compress_all(plans));
      for (const ModuleDelta& m : pack.modules) ++ops[ModuleOpName(m.op)];
      double total_error = 0;
      for (const ModuleCandidates& c : cands) total_error += c.options[0].error;  // option 0: nothing stored
      Json budget = {{"target_bytes", target},
                     {"planned_bytes", alloc.bytes + kPackFixedBytes},
                     {"attempts", attempt},
                     {"error", calibrated ? "output (calibrated)" : "frobenius"},
                     {"planned_relative_error", total_error > 0 ? std::max(0.0, alloc.error) / total_error : 0.0},
                     {"modules_by_op", ops}};
      Json p = prov;
      p["budget"] = budget;
      pack.manifest = WithCompression(mf, p);
      ASSIGN_OR_RETURN(std::string image, SerializeSkillPack(pack));
      const int64_t file = static_cast<int64_t>(image.size());
      const BudgetSearch::Verdict verdict = search.Attempt(file, smallest, top != nullptr);
      if (search.kept()) best = std::move(pack);
      if (verdict == BudgetSearch::Verdict::kCannotBeMet) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "budget target of ", target, " bytes (ratio ", static_cast<double>(target) / fp16_bytes,
            ") cannot be met: the smallest pack is ", file, " bytes (ratio ", static_cast<double>(file) / fp16_bytes,
            "): norms and other small tensors are stored whole and the header and manifest take room too"));
      }
      if (verdict == BudgetSearch::Verdict::kDone) break;
    }
    if (!best) {
      return absl::ResourceExhaustedError(absl::StrCat("budget target of ", target,
                                                       " bytes missed: every pack tried came out larger after ",
                                                       kAttempts, " attempts"));
    }
    return std::move(*best);
  } catch (const std::exception& e) {
    return StatusFromException(e, "compressing the delta");
  }
}

}  // namespace

StatusOr<SkillPack> CompressDelta(const ModelWeights& base, const ModelWeights& tuned, const CompressionConfig& cfg,
                                  const CalibrationStats* calib,
                                  const std::function<void(const CompressProgress&)>& progress) {
  return CompressDeltaImpl(base, tuned, cfg, calib, progress, nullptr);
}

StatusOr<SkillPack> CompressDelta(const ModelWeights& base, const ModelWeights& tuned, const CompressionConfig& cfg,
                                  const CalibrationStats* calib,
                                  const std::function<void(const CompressProgress&)>& progress,
                                  const PackManifest& manifest) {
  return CompressDeltaImpl(base, tuned, cfg, calib, progress, &manifest);
}

}  // namespace skillpack
