#include "core/model.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/decode_attention.h"
#include "core/quant_rows.h"
#include "core/small_gemm.h"
#include "core/sparse_rows.h"
#include "core/weight_delta.h"

namespace skillpack {
namespace {

constexpr double kMaskedScore = -1e30;  // finite, so a fully masked row cannot produce NaN

// Whether SmallGemm can compute x · wᵀ + b: 1..kSmallGemmMaxRows float32 rows on the CPU,
// contiguous float32 weights, and no autograd (it records no graph). One row
// runs the kernel too, not BLAS's GEMV: 10-18% faster on 1.1B shapes, and a
// decode whose batch moves between one row and several then stays on one
// thread pool (OpenBLAS's workers spin after a GEMV while libgomp's start the
// next kernel, and the two pools fought over this machine's two cores:
// bench/README.md, model_bench's linears alone).
bool UseSmallGemm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const int64_t rows = x.size(-1) > 0 ? x.numel() / x.size(-1) : 0;
  if (rows < 1 || rows > kSmallGemmMaxRows || !SmallGemmAvailable()) return false;
  auto plain = [](const at::Tensor& t) { return t.scalar_type() == at::kFloat && t.is_cpu() && !t.requires_grad(); };
  return plain(x) && plain(w) && w.dim() == 2 && w.is_contiguous() && (!b.defined() || (plain(b) && b.is_contiguous()));
}

// x · wᵀ + b with SmallGemm, output columns split across the intra-op threads
// (blocks of at least ~1M weights each: on smaller layers, such as the tiny
// model's, the threads' wake-ups cost more than they save). w is float32, or
// float16 (SmallGemmF16: a pack's dense matrix in the host tier, RowDeltas).
// x is copied to rows SmallGemmRowStride(k) apart (small_gemm.h: rows a
// multiple of 1 KiB apart evict each other from L1).
at::Tensor SmallBatchLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const int64_t k = x.size(-1), n = w.size(0), ldx = SmallGemmRowStride(k);
  const at::Tensor x2 = x.reshape({-1, k});
  const int64_t m = x2.size(0);
  at::Tensor xc = x2;
  if (ldx != k || !x2.is_contiguous()) {
    xc = at::empty({m, ldx}, x.options());
    xc.narrow(1, 0, k).copy_(x2);
  }
  at::Tensor y = at::empty({m, n}, x.options());
  const float* xp = xc.data_ptr<float>();
  const bool half = w.scalar_type() == at::kHalf;
  const void* wp = w.data_ptr();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const int64_t blocks = (n + kSmallGemmBlock - 1) / kSmallGemmBlock;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 20) / (kSmallGemmBlock * std::max<int64_t>(k, 1)));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    const int64_t n0 = b0 * kSmallGemmBlock, n1 = std::min(n, b1 * kSmallGemmBlock);
    if (half) {
      SmallGemmF16(xp, m, k, ldx, static_cast<const uint16_t*>(wp), bp, n0, n1, yp, n);
    } else {
      SmallGemm(xp, m, k, ldx, static_cast<const float*>(wp), bp, n0, n1, yp, n);
    }
  });
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = n;
  return y.view(shape);
}

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (UseSmallGemm(x, w, b)) return SmallBatchLinear(x, w, b);
  if (x.numel() == x.size(-1)) {
    // One row (batch-1 decode): GEMV. OpenBLAS's GEMM with M = 1 runs ~2.5x
    // slower than its GEMV on the same weights (measured on the CI machine).
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = w.size(0);
    at::Tensor y = at::mv(w, x.reshape({-1}));
    if (b.defined()) y = y + b;
    return y.view(shape);
  }
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

at::Tensor RotateHalf(const at::Tensor& x) {
  int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos + RotateHalf(x) * sin;
}

// q [B,H,T,hd], k/v [B,KV,L,hd], allowed bool [B,1,1,T,L] -> [B,T,H*hd].
at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& allowed,
                  int64_t groups) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3);
  const int64_t KV = k.size(1), L = k.size(2);
  at::Tensor qg = q.reshape({B, KV, groups * T, hd});
  at::Tensor scores = at::matmul(qg, k.transpose(-1, -2)).mul_(1.0 / std::sqrt(static_cast<double>(hd)));
  scores = scores.view({B, KV, groups, T, L}).masked_fill(allowed.logical_not(), kMaskedScore);
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  at::Tensor out = at::matmul(probs.view({B, KV, groups * T, L}), v);  // [B,KV,G*T,hd]
  return out.view({B, H, T, hd}).transpose(1, 2).reshape({B, T, H * hd});
}

// The step's sequences for DecodeAttention when it serves this step: one new
// token per sequence, float32 on the CPU, DecodeAttentionEnabled(); empty
// otherwise. Query position lens[b] sees keys [lens[b] - window + 1, lens[b]]
// (all of [0, lens[b]] without a window): AttentionMask's rule for one query.
std::vector<DecodeAttentionSeq> DecodeSeqs(const std::vector<int64_t>& slots, const std::vector<int64_t>& lens,
                                           int64_t T, int64_t sliding_window, const at::Tensor& cache) {
  if (T != 1 || !DecodeAttentionEnabled() || !cache.is_cpu() || cache.scalar_type() != at::kFloat ||
      !cache.is_contiguous()) {
    return {};
  }
  std::vector<DecodeAttentionSeq> seqs(slots.size());
  for (size_t b = 0; b < slots.size(); ++b) {
    const int64_t end = lens[b] + 1;
    seqs[b] = {slots[b], sliding_window > 0 ? std::max<int64_t>(0, end - sliding_window) : 0, end};
  }
  return seqs;
}

// q [B,H,1,hd] against the cache tensors kc/vc [slots,KV,max_len,hd] (the
// step's keys and values already written) -> [B,1,H*hd], like Attend. The
// (sequence, KV head) units are split across the intra-op threads from ~1M
// FLOPs in all; below that one thread is quicker than waking the other.
at::Tensor DecodeAttend(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc,
                        const std::vector<DecodeAttentionSeq>& seqs) {
  const at::Tensor qc = q.to(at::kFloat).contiguous();
  const int64_t B = q.size(0), H = q.size(1), hd = q.size(3);
  const DecodeAttentionShape shape{H, kc.size(1), hd, kc.size(2)};
  at::Tensor out = at::empty({B, 1, H * hd}, qc.options());
  int64_t keys = 0;
  for (const DecodeAttentionSeq& s : seqs) keys += s.key_end - s.key_begin;
  const int64_t units = B * shape.num_kv_heads;
  const int64_t grain = 4 * H * hd * keys >= (int64_t{1} << 20) ? 1 : units;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const float* qp = qc.data_ptr<float>();
  const float* kp = kc.data_ptr<float>();
  const float* vp = vc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, units, grain,
                   [&](int64_t u0, int64_t u1) { DecodeAttention(shape, seqs.data(), qp, kp, vp, scale, u0, u1, op); });
  return out.to(q.scalar_type());
}

// The tensor whose terms a RowDeltas call adds: a layer's, by position, or
// one outside the layers, by name (embeddings, final norm, lm_head).
class TensorKey {
 public:
  TensorKey(int64_t layer, LayerTensor t) : layer_(layer), t_(t) {}
  explicit TensorKey(const std::string& name) : name_(&name) {}
  const std::vector<DeltaTerm>* In(const WeightDelta& d) const {
    return name_ != nullptr ? d.Find(*name_) : d.Find(layer_, t_);
  }

 private:
  const std::string* name_ = nullptr;
  int64_t layer_ = -1;
  LayerTensor t_ = LayerTensor::kInputNorm;
};

// Per-sequence corrections of one Step (SeqStep::delta): the batch's rows
// grouped by delta; each group adds its own terms to the outputs the base
// weights produced for all rows.
class RowDeltas {
 public:
  static constexpr int64_t kConcatBytes = int64_t{1} << 20;

  RowDeltas() = default;
  RowDeltas(const std::vector<SeqStep>& batch, const at::Device& device) : batch_size_(batch.size()), device_(device) {
    for (int64_t b = 0; b < batch_size_; ++b) {
      const WeightDelta* d = batch[b].delta;
      if (d == nullptr || d->terms().empty()) continue;
      size_t j = std::find(sets_.begin(), sets_.end(), d) - sets_.begin();
      if (j == sets_.size()) {
        sets_.push_back(d);
        rows_.emplace_back();
      }
      rows_[j].push_back(b);
    }
    index_.resize(rows_.size());
  }

  bool empty() const { return sets_.empty(); }

  // y = the base output of x [B, ..., in] for weight `weight` (and `bias`,
  // nullptr when none); returns y with every row's terms of both added.
  // Low-rank terms go through AddLowRankRows (the small-batch kernel, decode
  // and prefill) wherever it runs. Otherwise (no kernel on this CPU, or not
  // float32 on the CPU) through ATen: small factors (all groups' together
  // under kConcatBytes) as one pair of GEMMs, x [.., in] · Vcatᵀ -> [.., K],
  // masked so that each row keeps only its own group's columns (times the
  // term's scale), · UScatᵀ -> [.., out], which saves kernel launches where
  // they dominate; larger ones group by group on the group's rows.
  at::Tensor Linear(const TensorKey& weight, const TensorKey* bias, const at::Tensor& x, at::Tensor y) const {
    // On the stack for the usual few sets (one call per linear layer per step).
    absl::InlinedVector<const DeltaTerm*, 16> low_rank;
    absl::InlinedVector<std::pair<size_t, float>, 16> blocks;  // (group, scale) per low-rank term
    for (size_t j = 0; j < sets_.size(); ++j) {
      if (const std::vector<DeltaTerm>* terms = weight.In(*sets_[j])) {
        for (const DeltaTerm& t : *terms) {
          if (t.low_rank()) {
            low_rank.push_back(&t);  // float16 and int8 factors stay so for AddLowRankRows
            blocks.emplace_back(j, t.scale);
          } else if (t.is_sparse()) {
            y = AddSparseLinear(j, t, x, y);
          } else if (t.is_quant()) {
            y = AddQuantLinear(j, t, x, y);
          } else {
            y = AddDenseLinear(j, t, x, y);
          }
        }
      }
      const std::vector<DeltaTerm>* bterms = bias == nullptr ? nullptr : bias->In(*sets_[j]);
      for (size_t i = 0; bterms != nullptr && i < bterms->size(); ++i) {
        const DeltaTerm& t = (*bterms)[i];
        y = AddRows(y, j, (t.dense * t.scale).to(y.scalar_type()));
      }
    }
    if (low_rank.empty()) return y;
    if (AddLowRankRows(low_rank, blocks, x, y)) return y;
    // The ATen paths (no kernel on this CPU, or x not float32 on the CPU):
    // factors in x's type, float16 and int8 ones widened here for the call
    // (int8 ones with their rank scales folded into us).
    std::vector<at::Tensor> vts, uss;
    for (const DeltaTerm* t : low_rank) {
      vts.push_back(t->vt.to(x.scalar_type()));
      uss.push_back(t->UsAs(x.scalar_type()));
    }
    int64_t factor_bytes = 0;
    for (size_t i = 0; i < vts.size(); ++i) factor_bytes += (vts[i].numel() + uss[i].numel()) * vts[i].element_size();
    if (vts.size() == 1 || factor_bytes > kConcatBytes) {
      for (size_t i = 0; i < vts.size(); ++i) {
        const size_t j = blocks[i].first;
        at::Tensor xs = GroupOf(j, x);
        y = AddRows(y, j, skillpack::Linear(skillpack::Linear(xs, vts[i], {}).mul_(blocks[i].second), uss[i], {}));
      }
      return y;
    }
    at::Tensor vcat = at::cat(vts, 0), uscat = at::cat(uss, 1);
    const int64_t K = vcat.size(0);
    std::vector<float> mask(batch_size_ * K, 0.0f);
    int64_t col = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      const int64_t k = vts[i].size(0);
      for (int64_t b : rows_[blocks[i].first]) std::fill_n(&mask[b * K + col], k, blocks[i].second);
      col += k;
    }
    std::vector<int64_t> mshape(x.dim(), 1);
    mshape.front() = batch_size_;
    mshape.back() = K;
    at::Tensor m = at::tensor(mask, at::kFloat).view(mshape).to(x.device(), x.scalar_type());
    return y + skillpack::Linear(skillpack::Linear(x, vcat, {}).mul_(m), uscat, {});
  }

  // Adds the low-rank terms to y in place with the small-batch kernel, group
  // by group: the group's rows of x gathered, t = scale · x · vtᵀ, and
  // y's rows += t · usᵀ. No ATen op per group or term, so a step over many
  // sets costs their factors' bytes, not per-op dispatch (the SGMV idea, the
  // CPU twin of kernels/lowrank_apply); the factors are read through their
  // views (DeltaTerm::view), not their tensor objects. A group's rows (a
  // prefill's B · T) run in pieces of up to kSmallGemmMaxRows; one module's
  // factors (rank · (in + out) values) stay in L2 between pieces, so memory
  // still sees them about once. Pieces of all groups are split across the
  // intra-op threads (their rows are disjoint). Factors may be float32,
  // float16 (SmallGemmF16 widens them as it streams them: half the bytes) or
  // int8 codes (SmallGemmI8: a quarter; t's columns are then multiplied by the
  // rank scales too). A us stored transposed (the host tier's layout,
  // pack/decode.h) is added straight into y's rows by SmallGemmAccumulate,
  // sums along the outputs: 6-10x faster than SmallGemm's along the rank
  // (core/small_gemm.h); a contiguous one goes through SmallGemm and a buffer.
  // Likewise a vt stored transposed (the host tier's layout too): t's rows
  // come from SmallGemmAccumulate's narrow kernel as rank-wide vectors, with
  // no horizontal sum per output (1.3-2x faster at rank 16 than SmallGemm over
  // a contiguous vt, core/weight_delta.h's VtLayout).
  // Returns false, touching nothing, unless x and y are contiguous float32 on
  // the CPU, every term's view is ready (factors on the CPU, each contiguous
  // or transposed) and the kernel is available.
  bool AddLowRankRows(absl::Span<const DeltaTerm* const> terms, absl::Span<const std::pair<size_t, float>> blocks,
                      const at::Tensor& x, at::Tensor& y) const {
    if (!RawPath(x, y)) return false;
    const int64_t k = x.size(-1), n = y.size(-1);
    if (k == 0 || x.numel() % (batch_size_ * k) != 0) return false;
    const int64_t per_seq = x.numel() / (batch_size_ * k);  // rows of x per sequence (1 when decoding)
    int64_t factor_elems = 0;
    for (const DeltaTerm* t : terms) {
      if (!t->view.ready) return false;
      factor_elems += t->view.rank * (t->view.in + t->view.out);
    }
    // Work items: (group, first row, end row) over the group's rows of x in order.
    struct Piece {
      size_t group;
      int64_t begin, end;
    };
    absl::InlinedVector<Piece, 16> pieces;
    absl::InlinedVector<size_t, 16> seen;
    int64_t total_rows = 0;
    for (const auto& [j, scale] : blocks) {
      if (std::find(seen.begin(), seen.end(), j) != seen.end()) continue;
      seen.push_back(j);
      const int64_t m = static_cast<int64_t>(rows_[j].size()) * per_seq;
      total_rows += m;
      for (int64_t r0 = 0; r0 < m; r0 += kSmallGemmMaxRows)
        pieces.push_back({j, r0, std::min(m, r0 + kSmallGemmMaxRows)});
    }
    const at::Tensor xc = x.contiguous();
    const float* xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    const int64_t npieces = static_cast<int64_t>(pieces.size());
    // Threads only from ~1M weights of work, as SmallBatchLinear.
    const int64_t grain =
        factor_elems * std::max<int64_t>(1, total_rows / kSmallGemmMaxRows) < (int64_t{1} << 20) ? npieces : 1;
    at::parallel_for(0, npieces, grain, [&](int64_t p0, int64_t p1) {
      const int64_t ldx = SmallGemmRowStride(k);
      // Scratch kept per thread and only ever grown: a step calls this for
      // every linear layer, and fresh buffers (or a resize up after a smaller
      // piece) cost an allocation or a zero fill of what is then overwritten.
      thread_local std::vector<float> xs, t, out;
      auto grow = [](std::vector<float>& v, int64_t n) {
        if (static_cast<int64_t>(v.size()) < n) v.resize(n);
      };
      thread_local std::vector<int64_t> rows;
      thread_local std::vector<float*> y_rows, t_rows;
      // The next group's factors, towards L2 while this group computes: a
      // step reads every set's factors once, and in one-row pieces the kernels
      // otherwise wait on each line (measured: bench/README.md).
      auto prefetch = [&](size_t group) {
        for (size_t i = 0; i < blocks.size(); ++i) {
          if (blocks[i].first != group) continue;
          const FactorView& v = terms[i]->view;
          const int64_t size = static_cast<int64_t>(c10::elementSize(v.type));
          for (const auto& [f, bytes] :
               {std::pair{v.vt, v.rank * v.in * size}, std::pair{v.us, v.rank * v.out * size}}) {
            for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(static_cast<const char*>(f) + o, 0, 2);
          }
        }
      };
      for (int64_t p = p0; p < p1; ++p) {
        const Piece& piece = pieces[p];
        if (p + 1 < p1 && pieces[p + 1].group != piece.group) prefetch(pieces[p + 1].group);
        // Rows of x of the piece: the group's sequences in order, per_seq rows each.
        rows.clear();
        for (int64_t r = piece.begin; r < piece.end; ++r) {
          rows.push_back(rows_[piece.group][r / per_seq] * per_seq + r % per_seq);
        }
        const int64_t m = static_cast<int64_t>(rows.size());
        // One row (a decoding sequence alone in its set) is read in place;
        // more are gathered at the kernel's row stride.
        const float* xrows = xp + rows[0] * k;
        int64_t xld = k;
        if (m > 1) {
          grow(xs, m * ldx);
          for (int64_t r = 0; r < m; ++r) std::copy_n(xp + rows[r] * k, k, xs.data() + r * ldx);
          xrows = xs.data();
          xld = ldx;
        }
        for (size_t i = 0; i < blocks.size(); ++i) {
          if (blocks[i].first != piece.group) continue;
          const FactorView& v = terms[i]->view;
          const int64_t rank = v.rank;
          grow(t, m * rank);
          if (v.vt_transposed) {
            // vtᵀ [k, rank] row-major: t's rows as rank-wide vectors of sums (from zero).
            std::fill_n(t.data(), m * rank, 0.0f);
            t_rows.resize(m);
            for (int64_t r = 0; r < m; ++r) t_rows[r] = t.data() + r * rank;
            Accumulate(xrows, m, k, xld, v.type, v.vt, rank, t_rows.data());
          } else {
            Gemm(xrows, m, k, xld, v.type, v.vt, rank, t.data(), rank);
          }
          if (v.rank_scale != nullptr) {
            for (int64_t r = 0; r < m; ++r) {
              for (int64_t c = 0; c < rank; ++c) t[r * rank + c] *= blocks[i].second * v.rank_scale[c];
            }
          } else {
            for (int64_t e = 0; e < m * rank; ++e) t[e] *= blocks[i].second;
          }
          if (v.us_transposed) {
            // usᵀ [rank, n] row-major: added straight into y's rows.
            y_rows.resize(m);
            for (int64_t r = 0; r < m; ++r) y_rows[r] = yp + rows[r] * n;
            Accumulate(t.data(), m, rank, rank, v.type, v.us, n, y_rows.data());
            continue;
          }
          grow(out, m * n);
          Gemm(t.data(), m, rank, rank, v.type, v.us, n, out.data(), n);
          for (int64_t r = 0; r < m; ++r) {
            float* dst = yp + rows[r] * n;
            const float* src = out.data() + r * n;
            for (int64_t c = 0; c < n; ++c) dst[c] += src[c];
          }
        }
      }
    });
    return true;
  }

  // y + t.scale · x · Sᵀ on group j's rows, S = t.sparse [out, in]: on the
  // CPU the entries of each output row are read once for all the group's
  // rows, split across the threads by output row (SparseRowsLinearAdd: no
  // dense copy of S, whose rows a pruned lm_head mostly leaves empty); where
  // the raw loops do not run (not float32 on the CPU, or the small-batch
  // kernel switched off: SetSmallGemmEnabled), through SparseRows::Linear.
  at::Tensor AddSparseLinear(size_t j, const DeltaTerm& t, const at::Tensor& x, at::Tensor y) const {
    const SparseRows& s = t.sparse;
    if (!RawPath(x, y)) {
      const at::Tensor xs = GroupOf(j, x);
      std::vector<int64_t> shape = xs.sizes().vec();
      shape.back() = s.rows();
      return AddRows(y, j, s.Linear(xs.reshape({-1, x.size(-1)})).view(shape).mul_(t.scale));
    }
    const at::Tensor xc = x.contiguous();
    std::vector<const float*> x_rows;
    std::vector<float*> y_rows;
    GroupRows(j, xc, y, &x_rows, &y_rows);
    const int64_t m = static_cast<int64_t>(x_rows.size()), out = s.rows();
    // Threads only from ~1M products, as SmallBatchLinear.
    const int64_t grain = s.nnz() * m < (int64_t{1} << 20) ? std::max<int64_t>(out, 1) : 64;
    at::parallel_for(0, out, grain, [&](int64_t j0, int64_t j1) {
      SparseRowsLinearAdd(s, t.scale, x_rows.data(), m, j0, j1, y_rows.data());
    });
    return y;
  }

  // y + t.scale · x · Dᵀ on group j's rows, D = t.dense [out, in] (float32,
  // or float16: a pack's full-precision matrix in the host tier). On the CPU
  // the group's rows in pieces of up to kSmallGemmMaxRows through
  // SmallBatchLinear, as a base layer's (a float16 D streamed as it is: no
  // float32 copy per step); through ATen where the raw loops do not run.
  // (WeightDelta::Create admits only float32 and float16 dense terms.)
  at::Tensor AddDenseLinear(size_t j, const DeltaTerm& t, const at::Tensor& x, at::Tensor y) const {
    const at::Tensor& d = t.dense;
    if (!RawPath(x, y) || !d.is_cpu() || !d.is_contiguous()) {
      const at::Tensor xs = GroupOf(j, x);
      return AddRows(y, j, at::linear(xs, d.to(x.scalar_type())).mul_(t.scale));
    }
    const int64_t k = x.size(-1), n = y.size(-1);
    const at::Tensor xc = x.contiguous();
    std::vector<const float*> x_rows;
    std::vector<float*> y_rows;
    GroupRows(j, xc, y, &x_rows, &y_rows);
    for (size_t r0 = 0; r0 < x_rows.size(); r0 += kSmallGemmMaxRows) {
      const int64_t m = std::min<int64_t>(kSmallGemmMaxRows, static_cast<int64_t>(x_rows.size() - r0));
      at::Tensor xs = at::empty({m, k}, xc.options());
      for (int64_t r = 0; r < m; ++r) std::copy_n(x_rows[r0 + r], k, xs.data_ptr<float>() + r * k);
      const at::Tensor out = SmallBatchLinear(xs, d, {});
      for (int64_t r = 0; r < m; ++r) {
        float* dst = y_rows[r0 + r];
        const float* src = out.data_ptr<float>() + r * n;
        for (int64_t c = 0; c < n; ++c) dst[c] += t.scale * src[c];
      }
    }
    return y;
  }

  // y + t.scale · x · Qᵀ on group j's rows, Q = t.quant [out, in] (a pack's
  // dense_quant codes): on the CPU the group's rows in pieces of up to
  // kSmallGemmMaxRows, each piece's inputs put in the codes' column order once
  // (QuantRowsPrepareInputs), then Q's output rows split across the threads
  // (QuantRowsLinearAdd: the small-batch kernel over the codes);
  // through the dense matrix where the raw loops do not run.
  at::Tensor AddQuantLinear(size_t j, const DeltaTerm& t, const at::Tensor& x, at::Tensor y) const {
    const QuantRows& q = t.quant;
    if (!RawPath(x, y) || !RawQuant(q)) {
      const at::Tensor xs = GroupOf(j, x);
      return AddRows(y, j, at::linear(xs, q.Dense().to(x.scalar_type())).mul_(t.scale));
    }
    const at::Tensor xc = x.contiguous();
    std::vector<const float*> x_rows;
    std::vector<float*> y_rows;
    GroupRows(j, xc, y, &x_rows, &y_rows);
    const int64_t n = y.size(-1);
    // Scratch kept across calls (this thread's): a piece's inputs and their group sums.
    thread_local std::vector<float> xs, sums;
    // Threads only from ~1M weights, as SmallBatchLinear.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(x.size(-1), 1));
    for (size_t r0 = 0; r0 < x_rows.size(); r0 += kSmallGemmMaxRows) {
      const int64_t m = std::min<int64_t>(kSmallGemmMaxRows, static_cast<int64_t>(x_rows.size() - r0));
      xs.resize(m * QuantRowsInputStride(q));
      sums.resize(m * q.num_groups());
      QuantRowsPrepareInputs(q, x_rows.data() + r0, m, xs.data(), sums.data());
      // The scratch by pointer: inside the region `xs` would name each worker's own (empty) vector.
      const float* xsp = xs.data();
      const float* sp = sums.data();
      float* const* yr = y_rows.data() + r0;
      at::parallel_for(0, n, grain,
                       [&](int64_t c0, int64_t c1) { QuantRowsLinearAdd(q, t.scale, xsp, sp, m, c0, c1, yr); });
    }
    return y;
  }

  // Whether QuantRows' raw loops may read q: its tensors contiguous on the CPU.
  static bool RawQuant(const QuantRows& q) {
    return q.codes.is_cpu() && q.codes.is_contiguous() && q.scales.is_contiguous() && q.shifts.is_contiguous() &&
           (!q.perm.defined() || q.perm.is_contiguous());
  }

  // Whether the raw loops may read x and add into y in place: both float32 on
  // the CPU, y contiguous, and the small-batch kernel on (tests switch it off
  // to check the ATen paths).
  static bool RawPath(const at::Tensor& x, const at::Tensor& y) {
    return SmallGemmAvailable() && x.is_cpu() && x.scalar_type() == at::kFloat && y.is_cpu() &&
           y.scalar_type() == at::kFloat && y.is_contiguous();
  }

  // y_rows[i] += x row i · w for m rows of x [m, k] (row stride ldx), w
  // [n, k] stored transposed ([k, n] row-major; float32, float16 or int8 codes).
  static void Accumulate(const float* x, int64_t m, int64_t k, int64_t ldx, at::ScalarType type, const void* w,
                         int64_t n, float* const* y_rows) {
    if (type == at::kChar) {
      SmallGemmAccumulateI8(x, m, k, ldx, static_cast<const int8_t*>(w), n, y_rows);
    } else if (type == at::kHalf) {
      SmallGemmAccumulateF16(x, m, k, ldx, static_cast<const uint16_t*>(w), n, y_rows);
    } else {
      SmallGemmAccumulate(x, m, k, ldx, static_cast<const float*>(w), n, y_rows);
    }
  }

  // y [m, n] (row stride ldy) = x · wᵀ for w [n, k] row-major (float32, float16 or int8 codes).
  static void Gemm(const float* x, int64_t m, int64_t k, int64_t ldx, at::ScalarType type, const void* w, int64_t n,
                   float* y, int64_t ldy) {
    if (type == at::kChar) {
      SmallGemmI8(x, m, k, ldx, static_cast<const int8_t*>(w), nullptr, 0, n, y, ldy);
    } else if (type == at::kHalf) {
      SmallGemmF16(x, m, k, ldx, static_cast<const uint16_t*>(w), nullptr, 0, n, y, ldy);
    } else {
      SmallGemm(x, m, k, ldx, static_cast<const float*>(w), nullptr, 0, n, y, ldy);
    }
  }

  // The norm weight w [D] per row, shaped to broadcast against x [B, ..., D];
  // w itself when no row has terms for `key`.
  at::Tensor NormWeight(const TensorKey& key, const at::Tensor& w, int64_t x_dim) const {
    at::Tensor rows;
    for (size_t j = 0; j < sets_.size(); ++j) {
      const std::vector<DeltaTerm>* terms = key.In(*sets_[j]);
      if (terms == nullptr) continue;
      if (!rows.defined()) rows = w.unsqueeze(0).repeat({batch_size_, 1});
      for (const DeltaTerm& t : *terms) rows = AddRows(rows, j, (t.dense * t.scale).to(w.scalar_type()));
    }
    if (!rows.defined()) return w;
    std::vector<int64_t> shape(x_dim, 1);
    shape.front() = batch_size_;
    shape.back() = w.size(0);
    return rows.view(shape);
  }

  // The rows of a low-rank term's us for tokens, as `type` (gathered first,
  // then widened, with int8 factors' rank scales).
  static at::Tensor EmbeddedFactor(const DeltaTerm& t, const at::Tensor& tokens, at::ScalarType type) {
    at::Tensor u = at::embedding(t.us, tokens).to(type);
    return t.rank_scale.defined() ? u * t.rank_scale.to(type) : u;
  }

  // x = the base embedding of tokens [B, T]; adds each row's embedding terms.
  // Sparse and quantised rows add each token's row in place on the CPU
  // (SparseRowsGatherAdd, QuantRowsGatherAdd), through their GatherRows
  // elsewhere.
  at::Tensor Embed(const std::string& name, const at::Tensor& tokens, at::Tensor x) const {
    for (size_t j = 0; j < sets_.size(); ++j) {
      const std::vector<DeltaTerm>* terms = sets_[j]->Find(name);
      if (terms == nullptr) continue;
      at::Tensor toks;  // the group's tokens, for the ATen paths
      for (const DeltaTerm& t : *terms) {
        const bool raw_form = t.is_sparse() || (t.is_quant() && RawQuant(t.quant));
        if (raw_form && RawPath(x, x) && tokens.is_cpu() && tokens.is_contiguous()) {
          const int64_t T = tokens.size(1), h = x.size(-1);
          std::vector<int64_t> ids;
          std::vector<float*> x_rows;
          for (int64_t b : rows_[j]) {
            for (int64_t i = 0; i < T; ++i) {
              ids.push_back(tokens.data_ptr<int64_t>()[b * T + i]);
              x_rows.push_back(x.data_ptr<float>() + (b * T + i) * h);
            }
          }
          if (t.is_sparse()) {
            SparseRowsGatherAdd(t.sparse, t.scale, ids.data(), static_cast<int64_t>(ids.size()), x_rows.data());
          } else {
            QuantRowsGatherAdd(t.quant, t.scale, ids.data(), static_cast<int64_t>(ids.size()), x_rows.data());
          }
          continue;
        }
        if (!toks.defined()) toks = GroupOf(j, tokens);
        at::Tensor rows;
        if (t.low_rank()) {
          rows = at::matmul(EmbeddedFactor(t, toks, x.scalar_type()), t.vt.to(x.scalar_type()));
        } else if (t.is_sparse()) {
          std::vector<int64_t> shape = toks.sizes().vec();
          shape.push_back(t.sparse.num_cols);
          rows = t.sparse.GatherRows(toks, x.scalar_type()).view(shape);
        } else if (t.is_quant()) {
          std::vector<int64_t> shape = toks.sizes().vec();
          shape.push_back(t.quant.num_cols);
          rows = t.quant.GatherRows(toks).to(x.device()).view(shape);
        } else {
          rows = at::embedding(t.dense, toks);
        }
        // Widened before the scale: a float16 term's (pack/decode.h) is a power of two that may pass 65504.
        x = AddRows(x, j, rows.to(x.scalar_type()).mul_(t.scale));
      }
    }
    return x;
  }

 private:
  bool full(size_t j) const { return static_cast<int64_t>(rows_[j].size()) == batch_size_; }
  // Group j's rows as a tensor on the device, for the ATen paths; made when
  // first asked for (the kernel paths take rows_ and make none: a tensor per
  // group per step is a measurable share of a small model's step).
  const at::Tensor& Index(size_t j) const {
    if (!index_[j].defined()) index_[j] = at::tensor(rows_[j], at::TensorOptions().dtype(at::kLong)).to(device_);
    return index_[j];
  }
  // Group j's rows of t [B, ...] (t itself when the group is the whole batch).
  at::Tensor GroupOf(size_t j, const at::Tensor& t) const { return full(j) ? t : t.index_select(0, Index(j)); }
  // Pointers to group j's rows of x (contiguous float32 on the CPU) and of y,
  // in order: each of the group's sequences' rows (one when decoding).
  void GroupRows(size_t j, const at::Tensor& x, at::Tensor& y, std::vector<const float*>* x_rows,
                 std::vector<float*>* y_rows) const {
    const int64_t k = x.size(-1), n = y.size(-1);
    const int64_t per_seq = x.numel() / (batch_size_ * k);
    for (int64_t b : rows_[j]) {
      for (int64_t r = 0; r < per_seq; ++r) {
        x_rows->push_back(x.data_ptr<float>() + (b * per_seq + r) * k);
        y_rows->push_back(y.data_ptr<float>() + (b * per_seq + r) * n);
      }
    }
  }
  // y + c on group j's rows (c: those rows' values, or one broadcastable row).
  at::Tensor AddRows(const at::Tensor& y, size_t j, const at::Tensor& c) const {
    if (full(j)) return y + c;
    std::vector<int64_t> shape = y.sizes().vec();
    shape.front() = static_cast<int64_t>(rows_[j].size());
    at::Tensor src = c.dim() == y.dim() ? c : c.expand(shape);
    return y.index_add(0, Index(j), src.contiguous());
  }

  int64_t batch_size_ = 0;
  std::vector<const WeightDelta*> sets_;
  std::vector<std::vector<int64_t>> rows_;
  at::Device device_ = at::kCPU;
  mutable std::vector<at::Tensor> index_;  // Index(): filled as asked for, on the step's thread
};

// Layer `layer`'s linear `weight` (and `bias`) with the rows' corrections.
// A layer without a bias has no bias tensor in the model, so no delta has
// terms for one (WeightDelta::Create) and none is looked up.
at::Tensor LayerLinear(const RowDeltas* rd, int64_t layer, LayerTensor weight, LayerTensor bias, const at::Tensor& x,
                       const at::Tensor& w, const at::Tensor& b) {
  at::Tensor y = Linear(x, w, b);
  if (rd == nullptr || rd->empty()) return y;
  const TensorKey bias_key(layer, bias);
  return rd->Linear(TensorKey(layer, weight), b.defined() ? &bias_key : nullptr, x, y);
}

at::Tensor LayerNorm(const RowDeltas* rd, int64_t layer, LayerTensor weight, const at::Tensor& x, const at::Tensor& w,
                     double eps) {
  if (rd == nullptr || rd->empty()) return RmsNorm(x, w, eps);
  return RmsNorm(x, rd->NormWeight(TensorKey(layer, weight), w, x.dim()), eps);
}

at::Tensor Mlp(const LayerWeights& lw, const at::Tensor& h, const RowDeltas* rd = nullptr, int64_t layer = 0) {
  at::Tensor g = LayerLinear(rd, layer, LayerTensor::kGate, LayerTensor::kGateBias, h, lw.gate, lw.gate_bias);
  at::Tensor u = LayerLinear(rd, layer, LayerTensor::kUp, LayerTensor::kUpBias, h, lw.up, lw.up_bias);
  return LayerLinear(rd, layer, LayerTensor::kDown, LayerTensor::kDownBias, at::silu(g) * u, lw.down, lw.down_bias);
}

// Query/key/value projections of h [B,T,D] with RoPE applied: q [B,H,T,hd], k/v [B,KV,T,hd].
struct Qkv {
  at::Tensor q, k, v;
};
Qkv Project(const ModelConfig& c, const LayerWeights& lw, const at::Tensor& h, const at::Tensor& cos,
            const at::Tensor& sin, const RowDeltas* rd = nullptr, int64_t layer = 0) {
  const int64_t B = h.size(0), T = h.size(1), hd = c.head_dim;
  Qkv r;
  r.q = LayerLinear(rd, layer, LayerTensor::kQ, LayerTensor::kQBias, h, lw.q, lw.q_bias)
            .view({B, T, c.num_attention_heads, hd})
            .transpose(1, 2);
  r.k = LayerLinear(rd, layer, LayerTensor::kK, LayerTensor::kKBias, h, lw.k, lw.k_bias)
            .view({B, T, c.num_key_value_heads, hd})
            .transpose(1, 2);
  r.v = LayerLinear(rd, layer, LayerTensor::kV, LayerTensor::kVBias, h, lw.v, lw.v_bias)
            .view({B, T, c.num_key_value_heads, hd})
            .transpose(1, 2);
  r.q = ApplyRope(r.q, cos, sin);
  r.k = ApplyRope(r.k, cos, sin);
  return r;
}

// allowed[b,0,0,t,j]: query at position qpos[b,t] may see key position j
// (causal, within the sliding window, and key_valid[b,j] when given).
at::Tensor AttentionMask(const at::Tensor& qpos, int64_t num_keys, int64_t sliding_window,
                         const at::Tensor& key_valid) {
  at::Tensor kpos = at::arange(num_keys, qpos.options()).view({1, 1, num_keys});
  at::Tensor qp = qpos.unsqueeze(-1);  // [B,T,1]
  at::Tensor allowed = kpos <= qp;
  if (sliding_window > 0) allowed = allowed.logical_and(qp - kpos < sliding_window);
  if (key_valid.defined()) allowed = allowed.logical_and(key_valid.to(at::kBool).unsqueeze(1));
  return allowed.unsqueeze(1).unsqueeze(1);
}

}  // namespace

at::Tensor LinearForward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) { return Linear(x, w, b); }

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(var + eps)).to(x.scalar_type());
}

Transformer::Transformer(ModelConfig config) : config_(std::move(config)) {
  const int64_t half = config_.head_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = 1.0 / std::pow(config_.rope_theta, static_cast<double>(2 * i) / config_.head_dim);
  }
  const RopeScaling& rs = config_.rope_scaling;
  if (rs.type == RopeScalingType::kLinear) {
    for (double& f : inv) f /= rs.factor;
  } else if (rs.type == RopeScalingType::kLlama3) {
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - smooth) * f / rs.factor + smooth * f;
      }
    }
  }
  std::vector<float> invf(inv.begin(), inv.end());
  inv_freq_ = at::tensor(invf, at::kFloat);
}

std::pair<at::Tensor, at::Tensor> Transformer::Rope(const at::Tensor& positions, at::ScalarType dtype) const {
  at::Tensor inv = inv_freq_.to(positions.device());
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv;  // [B,T,hd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);        // [B,1,T,hd]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor Transformer::RunLayers(const ModelWeights& w, const at::Tensor& tokens, const at::Tensor& attention_mask,
                                  int64_t num_layers) const {
  const int64_t B = tokens.size(0), T = tokens.size(1);
  at::Tensor x = at::embedding(w.embed_tokens(), tokens);
  at::Tensor positions = at::arange(T, tokens.options().dtype(at::kLong)).unsqueeze(0).expand({B, T});
  auto [cos, sin] = Rope(positions, x.scalar_type());
  at::Tensor allowed = AttentionMask(positions, T, config_.sliding_window, attention_mask);
  for (int64_t l = 0; l < num_layers; ++l) {
    const LayerWeights& lw = w.layers()[l];
    Qkv p = Project(config_, lw, RmsNorm(x, lw.input_norm, config_.rms_norm_eps), cos, sin);
    x = x + Linear(Attend(p.q, p.k, p.v, allowed, config_.num_kv_groups()), lw.o, lw.o_bias);
    x = x + Mlp(lw, RmsNorm(x, lw.post_attention_norm, config_.rms_norm_eps));
  }
  return x;
}

at::Tensor Transformer::Forward(const ModelWeights& w, const at::Tensor& tokens,
                                const at::Tensor& attention_mask) const {
  at::Tensor x = RunLayers(w, tokens, attention_mask, config_.num_hidden_layers);
  return at::linear(RmsNorm(x, w.final_norm(), config_.rms_norm_eps), w.lm_head());
}

at::Tensor Transformer::HiddenStates(const ModelWeights& w, const at::Tensor& tokens, const at::Tensor& attention_mask,
                                     int64_t num_layers) const {
  return RunLayers(w, tokens, attention_mask, std::min(num_layers, config_.num_hidden_layers));
}

at::Tensor Transformer::LayerForward(const ModelWeights& w, int64_t layer, const at::Tensor& x,
                                     const at::Tensor& attention_mask, LayerActivations* taps) const {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor positions = at::arange(T, x.options().dtype(at::kLong)).unsqueeze(0).expand({B, T});
  auto [cos, sin] = Rope(positions, x.scalar_type());
  at::Tensor allowed = AttentionMask(positions, T, config_.sliding_window, attention_mask);
  const LayerWeights& lw = w.layers()[layer];
  at::Tensor attn_in = RmsNorm(x, lw.input_norm, config_.rms_norm_eps);
  Qkv p = Project(config_, lw, attn_in, cos, sin);
  at::Tensor o_in = Attend(p.q, p.k, p.v, allowed, config_.num_kv_groups());
  at::Tensor h = x + Linear(o_in, lw.o, lw.o_bias);
  at::Tensor mlp_in = RmsNorm(h, lw.post_attention_norm, config_.rms_norm_eps);
  at::Tensor down_in = at::silu(Linear(mlp_in, lw.gate, lw.gate_bias)) * Linear(mlp_in, lw.up, lw.up_bias);
  if (taps != nullptr) *taps = LayerActivations{attn_in, o_in, mlp_in, down_in};
  return h + Linear(down_in, lw.down, lw.down_bias);
}

StatusOr<at::Tensor> Transformer::Step(const ModelWeights& w, KvCache& cache, const std::vector<SeqStep>& batch,
                                       bool all_logits) const {
  const int64_t B = static_cast<int64_t>(batch.size());
  if (B == 0) return absl::InvalidArgumentError("empty batch");
  int64_t T = 0, total_max = 0;
  bool consecutive = true;
  for (int64_t b = 0; b < B; ++b) {
    const SeqStep& s = batch[b];
    if (s.slot < 0 || s.slot >= cache.num_slots()) {
      return absl::InvalidArgumentError(absl::StrCat("bad KV cache slot ", s.slot));
    }
    if (s.tokens.empty()) return absl::InvalidArgumentError("a sequence step has no tokens");
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", t, " out of range [0, ", config_.vocab_size, ")"));
      }
    }
    const int64_t total = cache.length(s.slot) + static_cast<int64_t>(s.tokens.size());
    if (total > cache.max_seq_len()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence of ", total, " tokens exceeds the KV cache length ", cache.max_seq_len()));
    }
    T = std::max<int64_t>(T, s.tokens.size());
    total_max = std::max(total_max, total);
    if (b > 0 && s.slot != batch[b - 1].slot + 1) consecutive = false;
  }
  try {
    c10::InferenceMode guard;
    const at::Device device = w.embed_tokens().device();
    std::vector<int64_t> tok(B * T, 0), pos(B * T, 0), slots(B), lens(B), counts(B);
    for (int64_t b = 0; b < B; ++b) {
      slots[b] = batch[b].slot;
      lens[b] = cache.length(batch[b].slot);
      counts[b] = static_cast<int64_t>(batch[b].tokens.size());
      for (int64_t t = 0; t < T; ++t) {
        tok[b * T + t] = t < counts[b] ? batch[b].tokens[t] : 0;
        pos[b * T + t] = lens[b] + t;
      }
    }
    at::TensorOptions lopt = at::TensorOptions().dtype(at::kLong);
    at::Tensor tokens = at::tensor(tok, lopt).view({B, T}).to(device);
    at::Tensor positions = at::tensor(pos, lopt).view({B, T}).to(device);
    at::Tensor slot_index = at::tensor(slots, lopt).to(device);
    const RowDeltas rd(batch, device);
    static const std::string kEmbed = "model.embed_tokens.weight";
    at::Tensor x = at::embedding(w.embed_tokens(), tokens);
    if (!rd.empty()) x = rd.Embed(kEmbed, tokens, x);
    auto [cos, sin] = Rope(positions, x.scalar_type());
    // A decode step (one token per sequence) reads the cache where it is;
    // otherwise the batch's cache rows are gathered and masked for Attend.
    const std::vector<DecodeAttentionSeq> decode = DecodeSeqs(slots, lens, T, config_.sliding_window, cache.keys(0));
    at::Tensor allowed;
    if (decode.empty()) allowed = AttentionMask(positions, total_max, config_.sliding_window, at::Tensor());
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
      const LayerWeights& lw = w.layers()[l];
      Qkv p = Project(config_, lw, LayerNorm(&rd, l, LayerTensor::kInputNorm, x, lw.input_norm, config_.rms_norm_eps),
                      cos, sin, &rd, l);
      at::Tensor& kc = cache.keys(l);
      at::Tensor& vc = cache.values(l);
      for (int64_t b = 0; b < B; ++b) {
        kc[slots[b]].narrow(1, lens[b], counts[b]).copy_(p.k[b].narrow(1, 0, counts[b]));
        vc[slots[b]].narrow(1, lens[b], counts[b]).copy_(p.v[b].narrow(1, 0, counts[b]));
      }
      at::Tensor attended;
      if (!decode.empty()) {
        attended = DecodeAttend(p.q, kc, vc, decode);
      } else {
        at::Tensor keys = consecutive ? kc.narrow(0, slots[0], B) : kc.index_select(0, slot_index);
        at::Tensor vals = consecutive ? vc.narrow(0, slots[0], B) : vc.index_select(0, slot_index);
        attended =
            Attend(p.q, keys.narrow(2, 0, total_max), vals.narrow(2, 0, total_max), allowed, config_.num_kv_groups());
      }
      x = x + LayerLinear(&rd, l, LayerTensor::kO, LayerTensor::kOBias, attended, lw.o, lw.o_bias);
      x = x + Mlp(lw,
                  LayerNorm(&rd, l, LayerTensor::kPostAttentionNorm, x, lw.post_attention_norm, config_.rms_norm_eps),
                  &rd, l);
    }
    for (int64_t b = 0; b < B; ++b) cache.set_length(slots[b], lens[b] + counts[b]);
    if (!all_logits) {
      std::vector<int64_t> last(B);
      for (int64_t b = 0; b < B; ++b) last[b] = b * T + counts[b] - 1;
      x = x.reshape({B * T, -1}).index_select(0, at::tensor(last, lopt).to(device));
    }
    if (rd.empty())
      return Linear(RmsNorm(x, w.final_norm(), config_.rms_norm_eps), w.lm_head(), at::Tensor()).to(at::kFloat);
    static const std::string kFinalNorm = "model.norm.weight", kLmHead = "lm_head.weight";
    at::Tensor h = RmsNorm(x, rd.NormWeight(TensorKey(kFinalNorm), w.final_norm(), x.dim()), config_.rms_norm_eps);
    // A tied lm_head is the embedding matrix: the embedding's terms apply.
    const TensorKey head(config_.tie_word_embeddings ? kEmbed : kLmHead);
    return rd.Linear(head, nullptr, h, Linear(h, w.lm_head(), at::Tensor())).to(at::kFloat);
  } catch (const std::exception& e) {
    return StatusFromException(e, "model step");
  }
}

StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& dir, const at::TensorOptions& options) {
  auto m = std::make_unique<LoadedModel>();
  m->dir = dir;
  ASSIGN_OR_RETURN(m->config, LoadModelConfig(dir));
  ASSIGN_OR_RETURN(m->weights, ModelWeights::Load(m->config, dir, options));
  m->transformer = std::make_unique<Transformer>(m->config);
  return m;
}

}  // namespace skillpack
