// Tests of the CUDA kernels in kernels/ against their CPU twins
// (kernels_reference.h).
//   KernelsTwin*      the twins agree with core's codec (bitpack, Dequantize).
//   KernelsHost*      the kernels' per-thread code (quant_decode_inl.h) run on
//                     the host over every thread's work agrees with the twins;
//                     the launchers reject bad arguments. No GPU needed.
//   KernelsGpu*       the kernels on a CUDA device agree with the twins within
//                     bf16 / fp16 rounding. They skip (GTEST_SKIP) when
//                     cudaGetDeviceCount reports no device or an error.
#include <ATen/ATen.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
#include "kernels/dequant.h"
#include "kernels/lowrank_apply.h"
#include "kernels/quant_decode_inl.h"
#include "kernels/quant_view.h"
#include "kernels/reconstruct.h"
#include "pack/codec/bitpack.h"
#include "pack/codec/quantize.h"
#include "tests/kernels/kernels_reference.h"

namespace skillpack::kernels::testing {
namespace {

constexpr int kBitWidths[] = {2, 3, 4, 8};

template <typename T>
T Round(float v) {
  return FromFloat<T>::Convert(v);
}

// Upper bound on the spacing of T's values relative to the value: 2^-7 for
// bf16 (8 significant bits), 2^-10 for fp16.
template <typename T>
double RelativeUlp() {
  return std::is_same_v<T, __nv_bfloat16> ? 1.0 / 128 : 1.0 / 1024;
}

// |got - want| <= ulps units in the last place of T at |want| + abs_floor.
template <typename T>
::testing::AssertionResult Near(T got, double want, double ulps, double abs_floor) {
  const double err = std::fabs(static_cast<double>(ToFloat(got)) - want);
  const double tol = ulps * RelativeUlp<T>() * std::fabs(want) + abs_floor;
  if (err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << ToFloat(got) << ", want " << want << " (error " << err
                                       << " > tolerance " << tol << ")";
}

template <typename T>
std::vector<T> RandomValues(std::mt19937& rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<T> v(n);
  for (T& e : v) e = Round<T>(dist(rng));
  return v;
}

// One dequantisation case: a matrix and how the item writes it.
struct DequantCase {
  int rows;
  int cols;
  int bits;
  int group_size;
  bool act_order;
  bool fp16_scales;
  bool zeros_packed;
  bool col_scale;
  bool accumulate;
  int ld_pad;  // ld_out = cols + ld_pad
  float alpha;
};

std::string CaseName(const DequantCase& c) {
  return absl::StrCat(c.rows, "x", c.cols, " bits=", c.bits, " gs=", c.group_size, " act_order=", c.act_order,
                      " fp16_scales=", c.fp16_scales, " zeros_packed=", c.zeros_packed, " col_scale=", c.col_scale,
                      " accumulate=", c.accumulate, " ld_pad=", c.ld_pad);
}

// Every bit width x act-order on/off over shapes that cover: rows not byte
// aligned in the stream, chunks crossing group boundaries (gs 12), narrow
// U-like matrices, multi-row passes, and the 16-byte store path (no perm, cols
// and ld multiples of 8).
std::vector<DequantCase> DequantCases() {
  struct Shape {
    int rows, cols, group_size;
  };
  const Shape shapes[] = {{5, 37, 16}, {300, 16, 128}, {12, 1000, 128}, {3, 8, 8}, {64, 130, 12}};
  std::vector<DequantCase> cases;
  for (int bits : kBitWidths) {
    for (bool act_order : {false, true}) {
      for (int s = 0; s < 5; ++s) {
        DequantCase c;
        c.rows = shapes[s].rows;
        c.cols = shapes[s].cols;
        c.group_size = shapes[s].group_size;
        c.bits = bits;
        c.act_order = act_order;
        c.fp16_scales = (s + bits) % 2 == 1;
        c.zeros_packed = (s + static_cast<int>(act_order)) % 3 != 0;
        c.col_scale = (s + static_cast<int>(act_order)) % 2 == 1;
        c.accumulate = s % 3 == 1;
        c.ld_pad = s % 2 == 1 ? 3 : 0;
        c.alpha = s == 4 ? 0.75f : 1.0f;
        cases.push_back(c);
      }
    }
  }
  return cases;
}

// Host data of one case: the matrix, its column scales and the output's
// initial contents ([rows, ld_out], random so accumulation and untouched
// padding show).
template <typename T>
struct DequantData {
  DequantCase c;
  HostQuantMatrix m;
  std::vector<float> col_scale;  // [cols] or empty
  std::vector<T> out_init;
  int ld_out() const { return c.cols + c.ld_pad; }
};

template <typename T>
DequantData<T> MakeDequantData(std::mt19937& rng, const DequantCase& c) {
  DequantData<T> d;
  d.c = c;
  d.m = RandomQuantMatrix(rng, c.rows, c.cols, c.bits, c.group_size, c.act_order, c.fp16_scales, 0.01f, c.zeros_packed);
  if (c.col_scale) {
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    for (int j = 0; j < c.cols; ++j) d.col_scale.push_back(dist(rng));
  }
  d.out_init = RandomValues<T>(rng, static_cast<size_t>(c.rows) * d.ld_out(), -1.0f, 1.0f);
  return d;
}

// The twin's output for one case: the item's formula over
// DequantizeReference, in the kernel's float operation order.
template <typename T>
std::vector<T> ExpectedDequant(const DequantData<T>& d) {
  const std::vector<float> w = DequantizeReference(d.m);
  std::vector<T> out = d.out_init;
  for (int r = 0; r < d.c.rows; ++r) {
    for (int c = 0; c < d.c.cols; ++c) {
      float coef = d.c.alpha;
      if (d.c.col_scale) coef *= d.col_scale[c];
      float v = w[static_cast<size_t>(r) * d.c.cols + c] * coef;
      T& dst = out[static_cast<size_t>(r) * d.ld_out() + c];
      if (d.c.accumulate) v += ToFloat(dst);
      dst = Round<T>(v);
    }
  }
  return out;
}

template <typename T>
DequantItem<T> MakeItem(const DequantData<T>& d, const QuantMatrixView& src, T* out, const float* col_scale) {
  DequantItem<T> item;
  item.src = src;
  item.out = out;
  item.col_scale = col_scale;
  item.alpha = d.c.alpha;
  item.ld_out = d.ld_out();
  item.accumulate = d.c.accumulate ? 1 : 0;
  return item;
}

// ---------------------------------------------------------------------------
// The twins against core's codec.

QuantizedMatrix ToCore(const HostQuantMatrix& m) {
  QuantizedMatrix q;
  q.bits = m.bits;
  q.rows = m.rows;
  q.cols = m.cols;
  q.group_size = m.group_size;
  q.codes = at::from_blob(const_cast<uint8_t*>(m.codes.data()), {m.rows, m.cols}, at::kByte).clone();
  q.scales = at::from_blob(const_cast<float*>(m.scales.data()), {m.rows, m.num_groups()}, at::kFloat).clone();
  q.zeros = at::from_blob(const_cast<uint8_t*>(m.zeros.data()), {m.rows, m.num_groups()}, at::kByte).clone();
  if (!m.perm.empty()) {
    std::vector<int64_t> perm(m.perm.begin(), m.perm.end());
    q.perm = at::from_blob(perm.data(), {m.cols}, at::kLong).clone();
  }
  return q;
}

TEST(KernelsTwinTest, DequantizeMatchesCore) {
  std::mt19937 rng(1);
  for (int bits : kBitWidths) {
    for (bool act_order : {false, true}) {
      for (bool fp16_scales : {false, true}) {
        SCOPED_TRACE(absl::StrCat("bits=", bits, " act_order=", act_order, " fp16_scales=", fp16_scales));
        const HostQuantMatrix m = RandomQuantMatrix(rng, 7, 37, bits, 16, act_order, fp16_scales, 0.1f);
        const QuantizedMatrix q = ToCore(m);
        ASSERT_TRUE(ValidateQuantizedMatrix(q).ok());
        const at::Tensor core = Dequantize(q).contiguous();
        const std::vector<float> twin = DequantizeReference(m);
        ASSERT_EQ(core.numel(), static_cast<int64_t>(twin.size()));
        const float* core_data = core.data_ptr<float>();
        for (size_t i = 0; i < twin.size(); ++i) {
          ASSERT_EQ(core_data[i], twin[i]) << "element " << i;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// The kernels' per-thread code on the host.

TEST(KernelsHostTest, LoadCodesMatchesCoreUnpack) {
  std::mt19937 rng(2);
  for (int bits : kBitWidths) {
    SCOPED_TRACE(absl::StrCat("bits=", bits));
    const int count = 203;
    std::vector<uint8_t> codes(count);
    std::uniform_int_distribution<int> dist(0, (1 << bits) - 1);
    for (uint8_t& q : codes) q = static_cast<uint8_t>(dist(rng));
    // Exactly PackedBytes() long, so a read past the stream shows up under
    // ASan / valgrind.
    StatusOr<std::vector<uint8_t>> packed = PackCodes(codes, bits);
    ASSERT_TRUE(packed.ok());
    for (int first = 0; first < count; ++first) {
      const int n = std::min(kCodesPerChunk, count - first);
      uint32_t q[kCodesPerChunk];
      LoadCodes(packed->data(), first, n, bits, q);
      for (int i = 0; i < n; ++i) {
        ASSERT_EQ(q[i], codes[first + i]) << "first " << first << " i " << i;
      }
    }
  }
}

template <typename T>
void CheckHostDequant() {
  std::mt19937 rng(3);
  for (const DequantCase& c : DequantCases()) {
    SCOPED_TRACE(CaseName(c));
    const DequantData<T> d = MakeDequantData<T>(rng, c);
    std::vector<T> out = d.out_init;
    const DequantItem<T> item =
        MakeItem(d, HostView(d.m), out.data(), d.col_scale.empty() ? nullptr : d.col_scale.data());
    ASSERT_TRUE(IsValidDequantItem(item));
    for (int r = 0; r < c.rows; ++r) {
      for (int j0 = 0; j0 < c.cols; j0 += kCodesPerChunk) {
        DequantChunk(item, r, j0);
      }
    }
    const std::vector<T> want = ExpectedDequant(d);
    for (size_t i = 0; i < out.size(); ++i) {
      // Same float operations on the same machine: bit-identical.
      ASSERT_EQ(ToFloat(out[i]), ToFloat(want[i])) << "element " << i;
    }
  }
}

TEST(KernelsHostTest, DequantChunkMatchesTwinHalf) { CheckHostDequant<__half>(); }
TEST(KernelsHostTest, DequantChunkMatchesTwinBfloat16) { CheckHostDequant<__nv_bfloat16>(); }

// A low-rank apply problem: packs for one module, a batch and its rows' packs.
struct LowRankProblem {
  int in_features;
  int out_features;
  std::vector<HostFactor> packs;
  std::vector<int32_t> row_pack;  // -1 and out-of-range entries included
  int max_rank() const {
    int r = 0;
    for (const HostFactor& f : packs) r = std::max(r, f.rank());
    return r + 3;  // more than any pack, as a launch may have
  }
  int batch() const { return static_cast<int>(row_pack.size()); }
};

LowRankProblem MixedPackProblem(std::mt19937& rng, int in_features, int out_features) {
  LowRankProblem p;
  p.in_features = in_features;
  p.out_features = out_features;
  // Bands of falling precision, as the compressor writes them; group size 20
  // makes chunks of 8 codes cross group boundaries.
  p.packs.push_back(RandomFactor(rng, in_features, out_features, {8, 16, 5}, {8, 4, 2}, 128, /*act_order=*/true, 1.0f));
  p.packs.push_back(RandomFactor(rng, in_features, out_features, {12, 7}, {4, 3}, 20, /*act_order=*/false, 0.6f));
  p.row_pack = {0, 1, -1, 1, 0, 7};
  return p;
}

// Expected y (as double) for every row: y0 + the pack's delta; and the scale
// of each sum for the tolerance.
template <typename T>
void ExpectedLowRank(const LowRankProblem& p, const std::vector<T>& x, const std::vector<T>& y0,
                     std::vector<double>* want, std::vector<double>* magnitude) {
  want->assign(y0.size(), 0.0);
  magnitude->assign(y0.size(), 0.0);
  for (int b = 0; b < p.batch(); ++b) {
    const int pack = p.row_pack[b];
    std::vector<double> delta(p.out_features, 0.0);
    std::vector<double> mag(p.out_features, 0.0);
    if (pack >= 0 && pack < static_cast<int>(p.packs.size())) {
      std::vector<float> xb(p.in_features);
      for (int i = 0; i < p.in_features; ++i) {
        xb[i] = ToFloat(x[static_cast<size_t>(b) * p.in_features + i]);
      }
      delta = LowRankDeltaReference(p.packs[pack], xb, p.in_features, p.out_features);
      mag = LowRankDeltaMagnitude(p.packs[pack], xb, p.in_features, p.out_features);
    }
    for (int o = 0; o < p.out_features; ++o) {
      const size_t i = static_cast<size_t>(b) * p.out_features + o;
      (*want)[i] = ToFloat(y0[i]) + delta[o];
      (*magnitude)[i] = std::fabs(ToFloat(y0[i])) + mag[o];
    }
  }
}

// Band and factor descriptors of a problem whose matrices are at `views`.
struct FactorViews {
  std::vector<std::vector<LowRankBandView>> bands;  // per pack
  std::vector<LowRankFactorView> factors;
};

FactorViews HostFactorViews(const LowRankProblem& p) {
  FactorViews v;
  for (const HostFactor& f : p.packs) {
    std::vector<LowRankBandView> bands;
    for (const HostBand& hb : f.bands) {
      LowRankBandView band;
      band.u = HostView(hb.u);
      band.vt = HostView(hb.vt);
      band.rank_begin = hb.rank_begin;
      bands.push_back(band);
    }
    v.bands.push_back(std::move(bands));
  }
  for (size_t i = 0; i < p.packs.size(); ++i) {
    LowRankFactorView f;
    f.bands = v.bands[i].data();
    f.num_bands = static_cast<int32_t>(v.bands[i].size());
    f.rank = p.packs[i].rank();
    f.sigma = p.packs[i].sigma.data();
    f.weight = p.packs[i].weight;
    v.factors.push_back(f);
  }
  return v;
}

// Runs both phases' per-warp / per-thread code on the host, in the kernels'
// order (32 lanes per Vᵀ row, lanes summed in lane order).
template <typename T>
void EmulateLowRankApply(const LowRankProblem& p, const FactorViews& views, const std::vector<T>& x,
                         std::vector<T>* y) {
  const int num_packs = static_cast<int>(views.factors.size());
  for (int b = 0; b < p.batch(); ++b) {
    const int pack = p.row_pack[b];
    if (pack < 0 || pack >= num_packs) continue;
    const LowRankFactorView& f = views.factors[pack];
    const T* xb = x.data() + static_cast<size_t>(b) * p.in_features;
    std::vector<float> t(f.rank, 0.0f);
    for (int k = 0; k < f.rank; ++k) {
      for (int bi = 0; bi < f.num_bands; ++bi) {
        const LowRankBandView& band = f.bands[bi];
        if (k < band.rank_begin || k >= band.rank_begin + band.vt.rows) {
          continue;
        }
        ASSERT_TRUE(BandFits(band, p.in_features, p.out_features, f.rank));
        float acc = 0.0f;
        for (int lane = 0; lane < 32; ++lane) {
          acc += VtRowPartialDot(band, k - band.rank_begin, xb, lane, 32);
        }
        t[k] = f.weight * f.sigma[k] * acc;
        break;
      }
    }
    for (int o = 0; o < p.out_features; ++o) {
      T& yo = (*y)[static_cast<size_t>(b) * p.out_features + o];
      yo = Round<T>(ToFloat(yo) + URowDot(f, o, t.data(), p.in_features, p.out_features));
    }
  }
}

template <typename T>
void CheckHostLowRank() {
  std::mt19937 rng(4);
  const LowRankProblem p = MixedPackProblem(rng, 203, 150);
  const std::vector<T> x = RandomValues<T>(rng, static_cast<size_t>(p.batch()) * p.in_features, -1.0f, 1.0f);
  const std::vector<T> y0 = RandomValues<T>(rng, static_cast<size_t>(p.batch()) * p.out_features, -1.0f, 1.0f);
  std::vector<T> y = y0;
  EmulateLowRankApply(p, HostFactorViews(p), x, &y);
  std::vector<double> want, magnitude;
  ExpectedLowRank(p, x, y0, &want, &magnitude);
  for (size_t i = 0; i < y.size(); ++i) {
    ASSERT_TRUE(Near(y[i], want[i], 1.0, 1e-5 * magnitude[i])) << "element " << i;
  }
}

TEST(KernelsHostTest, LowRankApplyMatchesTwinHalf) { CheckHostLowRank<__half>(); }
TEST(KernelsHostTest, LowRankApplyMatchesTwinBfloat16) { CheckHostLowRank<__nv_bfloat16>(); }

TEST(KernelsHostTest, ViewChecks) {
  std::mt19937 rng(5);
  const HostQuantMatrix m = RandomQuantMatrix(rng, 4, 20, 3, 8, true, false, 1);
  QuantMatrixView v = HostView(m);
  EXPECT_TRUE(IsValidQuantMatrixView(v));
  EXPECT_EQ(NumGroupsOf(v), 3);
  QuantMatrixView bad = v;
  bad.bits = 5;
  EXPECT_FALSE(IsValidQuantMatrixView(bad));
  bad = v;
  bad.group_size = 0;
  EXPECT_FALSE(IsValidQuantMatrixView(bad));
  bad = v;
  bad.scales = nullptr;
  EXPECT_FALSE(IsValidQuantMatrixView(bad));
  bad = v;
  bad.scale_type = 7;
  EXPECT_FALSE(IsValidQuantMatrixView(bad));

  std::vector<__half> out(80);
  DequantItem<__half> item;
  item.src = v;
  item.out = out.data();
  item.ld_out = 20;
  EXPECT_TRUE(IsValidDequantItem(item));
  item.ld_out = 19;
  EXPECT_FALSE(IsValidDequantItem(item));

  LowRankGemm<__half> gemm;
  gemm.rows = 4;
  gemm.cols = 20;
  gemm.out = out.data();
  gemm.ld_out = 20;
  EXPECT_TRUE(IsValidLowRankGemm(gemm));  // rank 0: copy only
  gemm.rank = 2;
  EXPECT_FALSE(IsValidLowRankGemm(gemm));  // no factors
}

// Argument checks happen before any CUDA call, so they run without a GPU.
TEST(KernelsHostTest, LaunchersRejectBadArguments) {
  EXPECT_EQ(invokeBatchedDequant<__half>(nullptr, -1, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(invokeBatchedDequant<__nv_bfloat16>(nullptr, 3, -1, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(invokeBatchedDequant<__half>(nullptr, 0, 4, nullptr), cudaSuccess);
  EXPECT_EQ(invokeBatchedDequant<__half>(nullptr, 2, 4, nullptr), cudaErrorInvalidValue);

  EXPECT_EQ(invokeSegmentedLowRankApply<__half>(nullptr, 10, nullptr, 8, nullptr, 1, nullptr, 1,
                                                /*in_features=*/16, /*out_features=*/8, 4, nullptr, nullptr),
            cudaErrorInvalidValue);  // ld_x < in_features
  EXPECT_EQ(invokeSegmentedLowRankApply<__nv_bfloat16>(nullptr, 16, nullptr, 8, nullptr, 0, nullptr, 1, 16, 8, 4,
                                                       nullptr, nullptr),
            cudaSuccess);  // empty batch

  LowRankGemm<__half> bad;
  bad.rows = 4;
  bad.cols = 4;  // out is null
  EXPECT_EQ(invokeCopyBase(&bad, 1, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(invokeCopyBase<__half>(nullptr, -1, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(invokeLowRankGemm(nullptr, &bad, 1, nullptr), CUBLAS_STATUS_INVALID_VALUE);

  EXPECT_EQ(invokeBatchedSparseAdd<__half>(nullptr, -1, 1, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(invokeBatchedSparseAdd<__half>(nullptr, 1, 0, nullptr), cudaSuccess);
}

TEST(KernelsHostTest, CudaStatus) {
  EXPECT_TRUE(CudaStatus(cudaSuccess, "x").ok());
  const Status invalid = CudaStatus(cudaErrorInvalidValue, "dequant");
  EXPECT_EQ(invalid.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(invalid.message().find("dequant: cudaErrorInvalidValue"), std::string::npos) << invalid;
  EXPECT_EQ(CudaStatus(cudaErrorMemoryAllocation, "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(CudaStatus(cudaErrorLaunchFailure, "x").code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(CublasStatus(CUBLAS_STATUS_SUCCESS, "x").ok());
  EXPECT_EQ(CublasStatus(CUBLAS_STATUS_INVALID_VALUE, "gemm").code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// The kernels on a GPU.

bool CudaDeviceAvailable() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define SKIP_WITHOUT_CUDA_DEVICE()                                       \
  do {                                                                   \
    if (!CudaDeviceAvailable()) {                                        \
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none " \
                      "or an error): GPU kernel test skipped";           \
    }                                                                    \
  } while (0)

#define ASSERT_CUDA_OK(expr)                                                              \
  do {                                                                                    \
    const cudaError_t sp_err_ = (expr);                                                   \
    ASSERT_EQ(sp_err_, cudaSuccess) << #expr << ": " << cudaGetErrorName(sp_err_) << ": " \
                                    << cudaGetErrorString(sp_err_);                       \
  } while (0)

// Owns device allocations; frees them when it goes away.
class DeviceArena {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena() {
    for (void* p : allocations_) cudaFree(p);
  }

  // n elements (at least one byte is allocated); null after a failure,
  // which is reported as a test failure.
  template <typename E>
  E* Alloc(size_t n) {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, std::max<size_t>(n * sizeof(E), 1));
    if (err != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc: " << cudaGetErrorString(err);
      return nullptr;
    }
    allocations_.push_back(p);
    return static_cast<E*>(p);
  }

  template <typename E>
  E* Upload(const std::vector<E>& v) {
    E* d = Alloc<E>(v.size());
    if (d != nullptr && !v.empty()) {
      const cudaError_t err = cudaMemcpy(d, v.data(), v.size() * sizeof(E), cudaMemcpyHostToDevice);
      if (err != cudaSuccess) {
        ADD_FAILURE() << "cudaMemcpy: " << cudaGetErrorString(err);
      }
    }
    return d;
  }

  // A view of m whose arrays live on the device.
  QuantMatrixView UploadMatrix(const HostQuantMatrix& m) {
    QuantMatrixView v = HostView(m);
    v.codes = Upload(m.packed);
    v.scales =
        m.fp16_scales ? static_cast<const void*>(Upload(m.scales_fp16)) : static_cast<const void*>(Upload(m.scales));
    v.zeros = Upload(m.zeros_packed ? m.zeros_stream : m.zeros);
    v.perm = m.perm.empty() ? nullptr : Upload(m.perm);
    return v;
  }

 private:
  std::vector<void*> allocations_;
};

template <typename E>
std::vector<E> Download(const E* d, size_t n) {
  std::vector<E> v(n);
  const cudaError_t err = cudaMemcpy(v.data(), d, n * sizeof(E), cudaMemcpyDeviceToHost);
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  return v;
}

template <typename T>
class KernelsGpuTest : public ::testing::Test {};

class TypeNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, __half> ? "Half" : "Bfloat16";
  }
};
using OutputTypes = ::testing::Types<__half, __nv_bfloat16>;
TYPED_TEST_SUITE(KernelsGpuTest, OutputTypes, TypeNames);

// Every case as one item of ONE launch.
TYPED_TEST(KernelsGpuTest, BatchedDequantMatchesTwin) {
  SKIP_WITHOUT_CUDA_DEVICE();
  using T = TypeParam;
  std::mt19937 rng(6);
  DeviceArena arena;
  std::vector<DequantData<T>> data;
  std::vector<DequantItem<T>> items;
  int max_rows = 0;
  for (const DequantCase& c : DequantCases()) {
    data.push_back(MakeDequantData<T>(rng, c));
    const DequantData<T>& d = data.back();
    const float* col_scale = d.col_scale.empty() ? nullptr : arena.Upload(d.col_scale);
    items.push_back(MakeItem(d, arena.UploadMatrix(d.m), arena.Upload(d.out_init), col_scale));
    ASSERT_TRUE(IsValidDequantItem(items.back()));
    max_rows = std::max(max_rows, c.rows);
  }
  const DequantItem<T>* d_items = arena.Upload(items);
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_CUDA_OK(invokeBatchedDequant(d_items, static_cast<int>(items.size()), max_rows, nullptr));
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  for (size_t i = 0; i < data.size(); ++i) {
    SCOPED_TRACE(CaseName(data[i].c));
    const std::vector<T> got = Download(items[i].out, data[i].out_init.size());
    const std::vector<T> want = ExpectedDequant(data[i]);
    for (size_t e = 0; e < got.size(); ++e) {
      // One rounding of the same float value, up to a fused multiply-add.
      ASSERT_TRUE(Near(got[e], ToFloat(want[e]), 1.0, 1e-7)) << "element " << e;
    }
  }
}

// W_fused = base + Σ_p w_p U_p diag(σ_p) V_pᵀ through dequant (scaled U,
// stacked bands of two packs) + base copy + one GEMM, and two packs' sparse
// deltas on another tensor; the bases stay untouched.
TYPED_TEST(KernelsGpuTest, ReconstructMatchesTwin) {
  SKIP_WITHOUT_CUDA_DEVICE();
  using T = TypeParam;
  std::mt19937 rng(7);
  DeviceArena arena;
  const int rows = 96, cols = 80;
  const std::vector<HostFactor> packs = {RandomFactor(rng, cols, rows, {8, 4}, {8, 4}, 32, true, 0.7f),
                                         RandomFactor(rng, cols, rows, {6}, {3}, 32, true, 1.3f)};
  int total_rank = 0;
  for (const HostFactor& f : packs) total_rank += f.rank();
  T* ucat = arena.Alloc<T>(static_cast<size_t>(rows) * total_rank);
  T* vcat = arena.Alloc<T>(static_cast<size_t>(total_rank) * cols);
  std::vector<float> coef(total_rank);
  std::vector<int> pack_offset;
  for (size_t p = 0, offset = 0; p < packs.size(); ++p) {
    pack_offset.push_back(static_cast<int>(offset));
    for (int k = 0; k < packs[p].rank(); ++k) {
      coef[offset + k] = packs[p].weight * packs[p].sigma[k];
    }
    offset += packs[p].rank();
  }
  const float* d_coef = arena.Upload(coef);
  std::vector<DequantItem<T>> items;
  for (size_t p = 0; p < packs.size(); ++p) {
    for (const HostBand& band : packs[p].bands) {
      const int k0 = pack_offset[p] + band.rank_begin;
      DequantItem<T> u;
      u.src = arena.UploadMatrix(band.u);
      u.out = ucat + k0;
      u.ld_out = total_rank;
      u.col_scale = d_coef + k0;
      items.push_back(u);
      DequantItem<T> vt;
      vt.src = arena.UploadMatrix(band.vt);
      vt.out = vcat + static_cast<size_t>(k0) * cols;
      vt.ld_out = cols;
      items.push_back(vt);
    }
  }
  const std::vector<T> base = RandomValues<T>(rng, static_cast<size_t>(rows) * cols, -1.0f, 1.0f);
  const T* d_base = arena.Upload(base);
  T* d_out = arena.Alloc<T>(base.size());

  // Sparse: a [40, 24] tensor, one launch per pack.
  const int64_t numel = 40 * 24;
  const std::vector<T> sparse_base = RandomValues<T>(rng, static_cast<size_t>(numel), -1.0f, 1.0f);
  const T* d_sparse_base = arena.Upload(sparse_base);
  T* d_sparse_out = arena.Alloc<T>(static_cast<size_t>(numel));
  struct HostSparse {
    std::vector<int64_t> indices;
    std::vector<__half> values;
    float weight;
  };
  std::vector<HostSparse> sparse(2);
  for (size_t p = 0; p < sparse.size(); ++p) {
    std::uniform_real_distribution<float> value(-0.5f, 0.5f);
    for (int64_t i = 0; i < numel; ++i) {
      if (rng() % 4 == 0) {
        sparse[p].indices.push_back(i);
        sparse[p].values.push_back(__float2half_rn(value(rng)));
      }
    }
    sparse[p].weight = p == 0 ? 0.7f : 1.3f;
  }
  ASSERT_FALSE(::testing::Test::HasFailure());

  const DequantItem<T>* d_items = arena.Upload(items);
  ASSERT_CUDA_OK(invokeBatchedDequant(d_items, static_cast<int>(items.size()), rows, nullptr));
  LowRankGemm<T> modules[2];
  modules[0].base = d_base;
  modules[0].out = d_out;
  modules[0].u = ucat;
  modules[0].vt = vcat;
  modules[0].ld_base = modules[0].ld_out = modules[0].ld_vt = cols;
  modules[0].ld_u = total_rank;
  modules[0].rows = rows;
  modules[0].cols = cols;
  modules[0].rank = total_rank;
  modules[1].base = d_sparse_base;  // rank 0: only copied
  modules[1].out = d_sparse_out;
  modules[1].ld_base = modules[1].ld_out = 24;
  modules[1].rows = 40;
  modules[1].cols = 24;
  ASSERT_CUDA_OK(invokeCopyBase(modules, 2, nullptr));
  cublasHandle_t handle = nullptr;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  const cublasStatus_t gemm = invokeLowRankGemm(handle, modules, 2, nullptr);
  cublasDestroy(handle);
  ASSERT_EQ(gemm, CUBLAS_STATUS_SUCCESS);
  for (const HostSparse& s : sparse) {
    SparseAddItem<T> item;
    item.out = d_sparse_out;
    item.numel = numel;
    item.indices = arena.Upload(s.indices);
    item.values = arena.Upload(s.values);
    item.nnz = static_cast<int64_t>(s.indices.size());
    item.weight = s.weight;
    const SparseAddItem<T>* d_item = arena.Upload(std::vector<SparseAddItem<T>>{item});
    ASSERT_CUDA_OK(invokeBatchedSparseAdd(d_item, 1, item.nnz, nullptr));
  }
  ASSERT_CUDA_OK(cudaDeviceSynchronize());

  // The scaled, concatenated factors.
  const std::vector<T> u_got = Download(ucat, static_cast<size_t>(rows) * total_rank);
  const std::vector<T> vt_got = Download(vcat, static_cast<size_t>(total_rank) * cols);
  for (size_t p = 0; p < packs.size(); ++p) {
    for (const HostBand& band : packs[p].bands) {
      const int k0 = pack_offset[p] + band.rank_begin;
      const std::vector<float> u = DequantizeReference(band.u);
      const std::vector<float> vt = DequantizeReference(band.vt);
      for (int r = 0; r < rows; ++r) {
        for (int j = 0; j < band.u.cols; ++j) {
          const float want = ToFloat(Round<T>(u[r * band.u.cols + j] * coef[k0 + j]));
          ASSERT_TRUE(Near(u_got[static_cast<size_t>(r) * total_rank + k0 + j], want, 1.0, 1e-7));
        }
      }
      for (int i = 0; i < band.vt.rows; ++i) {
        for (int c = 0; c < cols; ++c) {
          const float want = ToFloat(Round<T>(vt[i * cols + c]));
          ASSERT_TRUE(Near(vt_got[static_cast<size_t>(k0 + i) * cols + c], want, 1.0, 1e-7));
        }
      }
    }
  }
  // The GEMM, against the factors it was given.
  const std::vector<T> out = Download(d_out, base.size());
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      double want = ToFloat(base[static_cast<size_t>(r) * cols + c]);
      double magnitude = std::fabs(want);
      for (int k = 0; k < total_rank; ++k) {
        const double term = static_cast<double>(ToFloat(u_got[static_cast<size_t>(r) * total_rank + k])) *
                            ToFloat(vt_got[static_cast<size_t>(k) * cols + c]);
        want += term;
        magnitude += std::fabs(term);
      }
      ASSERT_TRUE(Near(out[static_cast<size_t>(r) * cols + c], want, 1.0, 1e-5 * magnitude)) << "r " << r << " c " << c;
    }
  }
  // The sparse deltas, pack after pack.
  std::vector<T> sparse_want = sparse_base;
  for (const HostSparse& s : sparse) {
    for (size_t i = 0; i < s.indices.size(); ++i) {
      T& dst = sparse_want[s.indices[i]];
      dst = Round<T>(ToFloat(dst) + s.weight * __half2float(s.values[i]));
    }
  }
  const std::vector<T> sparse_got = Download(d_sparse_out, sparse_want.size());
  for (size_t i = 0; i < sparse_got.size(); ++i) {
    ASSERT_TRUE(Near(sparse_got[i], ToFloat(sparse_want[i]), 1.0, 1e-7)) << "element " << i;
  }
  // The bases were only read.
  const std::vector<T> base_after = Download(d_base, base.size());
  const std::vector<T> sparse_base_after = Download(d_sparse_base, sparse_base.size());
  for (size_t i = 0; i < base.size(); ++i) {
    ASSERT_EQ(ToFloat(base_after[i]), ToFloat(base[i]));
  }
  for (size_t i = 0; i < sparse_base.size(); ++i) {
    ASSERT_EQ(ToFloat(sparse_base_after[i]), ToFloat(sparse_base[i]));
  }
}

template <typename T>
void CheckGpuLowRank(const LowRankProblem& p, std::mt19937& rng) {
  DeviceArena arena;
  // Device copies of every matrix, then of the descriptors that point at
  // them.
  FactorViews views = HostFactorViews(p);
  std::vector<LowRankFactorView> d_factors = views.factors;
  for (size_t i = 0; i < p.packs.size(); ++i) {
    std::vector<LowRankBandView> bands = views.bands[i];
    for (size_t b = 0; b < bands.size(); ++b) {
      bands[b].u = arena.UploadMatrix(p.packs[i].bands[b].u);
      bands[b].vt = arena.UploadMatrix(p.packs[i].bands[b].vt);
    }
    d_factors[i].bands = arena.Upload(bands);
    d_factors[i].sigma = arena.Upload(p.packs[i].sigma);
  }
  const std::vector<T> x = RandomValues<T>(rng, static_cast<size_t>(p.batch()) * p.in_features, -1.0f, 1.0f);
  const std::vector<T> y0 = RandomValues<T>(rng, static_cast<size_t>(p.batch()) * p.out_features, -1.0f, 1.0f);
  const T* d_x = arena.Upload(x);
  T* d_y = arena.Upload(y0);
  const int32_t* d_row_pack = arena.Upload(p.row_pack);
  const LowRankFactorView* d_packs = arena.Upload(d_factors);
  float* scratch = arena.Alloc<float>(static_cast<size_t>(p.batch()) * p.max_rank());
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_CUDA_OK(invokeSegmentedLowRankApply(d_x, p.in_features, d_y, p.out_features, d_row_pack, p.batch(), d_packs,
                                             static_cast<int>(p.packs.size()), p.in_features, p.out_features,
                                             p.max_rank(), scratch, nullptr));
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<T> y = Download(d_y, y0.size());
  std::vector<double> want, magnitude;
  ExpectedLowRank(p, x, y0, &want, &magnitude);
  // One rounding to T, plus fp32 accumulation in another order than the
  // host's (per-lane sums, then a shuffle tree) over up to in_features terms.
  for (size_t i = 0; i < y.size(); ++i) {
    ASSERT_TRUE(Near(y[i], want[i], 1.0, 1e-4 * magnitude[i])) << "element " << i;
  }
}

// Six rows over two packs (multi-band, 8/4/3/2 bits, act-order on one),
// a row without a pack and one with an out-of-range pack id.
TYPED_TEST(KernelsGpuTest, SegmentedLowRankApplyMatchesTwin) {
  SKIP_WITHOUT_CUDA_DEVICE();
  std::mt19937 rng(8);
  CheckGpuLowRank<TypeParam>(MixedPackProblem(rng, 203, 150), rng);
}

// in_features * sizeof(T) = 64 KiB of shared memory: the launcher must raise
// the kernel's limit.
TYPED_TEST(KernelsGpuTest, SegmentedLowRankApplyWideInput) {
  SKIP_WITHOUT_CUDA_DEVICE();
  std::mt19937 rng(9);
  LowRankProblem p;
  p.in_features = 32768;
  p.out_features = 64;
  p.packs.push_back(RandomFactor(rng, p.in_features, p.out_features, {8}, {4}, 128, true, 1));
  p.row_pack = {0, 0};
  CheckGpuLowRank<TypeParam>(p, rng);
}

}  // namespace
}  // namespace skillpack::kernels::testing
