#include "core/decode_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/horizontal_sum.h"

namespace skillpack {
namespace {

// a · b over n floats, one build per ISA: vector FMAs into one register, then
// one horizontal sum (the reduction of a plain loop would be n serial adds:
// float additions may not be reordered).
__attribute__((target("avx512f"))) inline float DotAvx512(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  // Halves, quarters, then pairs and single lanes folded in place: on this
  // path ~10% faster than HorizontalSum512's extracts (measured on the whole
  // kernel). The masked forms with every lane set: GCC 12's unmasked ones (and
  // _mm512_reduce_add_ps) warn of an uninitialized variable inside its headers.
  acc = _mm512_add_ps(acc, _mm512_mask_shuffle_f32x4(acc, 0xFFFF, acc, acc, _MM_SHUFFLE(1, 0, 3, 2)));
  acc = _mm512_add_ps(acc, _mm512_mask_shuffle_f32x4(acc, 0xFFFF, acc, acc, _MM_SHUFFLE(2, 3, 0, 1)));
  acc = _mm512_add_ps(acc, _mm512_mask_shuffle_ps(acc, 0xFFFF, acc, acc, _MM_SHUFFLE(1, 0, 3, 2)));
  acc = _mm512_add_ps(acc, _mm512_mask_shuffle_ps(acc, 0xFFFF, acc, acc, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(acc);
}

__attribute__((target("avx2,fma"))) inline float DotAvx2(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = HorizontalSum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline float DotPlain(const float* a, const float* b, int64_t n) {
  float p[4] = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int l = 0; l < 4; ++l) p[l] += a[i + l] * b[i + l];
  }
  float s = (p[0] + p[1]) + (p[2] + p[3]);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// e^x for x <= 0 (a softmax's shifted scores), in plain arithmetic that the
// compiler vectorizes in each build (a call to expf is one scalar call per
// score): x = n ln 2 + r with n an integer and |r| <= ln 2 / 2, e^r by its
// Taylor polynomial of degree 7 (relative error < 2e-7 there), times 2^n put
// into the exponent bits. Below -87 (e^x under float's smallest normal) the
// result is 0; NaN stays NaN (and is not converted to an integer: that is
// undefined behaviour).
[[gnu::always_inline]] inline float ExpNonPositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504f + kRound) - kRound;
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;  // ln 2 in two parts
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n == n ? n : 0.0f) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x <= -87.0f ? 0.0f : p * scale;
}

// The largest of x[0..n) and the sum of x[0..n), n >= 1, each over 16 lanes
// that the compiler keeps in vector registers, folded once at the end (one
// running value would be a serial chain of n operations).
[[gnu::always_inline]] inline float Max(const float* x, int64_t n) {
  float lanes[16];
  for (int l = 0; l < 16; ++l) lanes[l] = x[0];
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 16; ++l) lanes[l] = lanes[l] < x[i + l] ? x[i + l] : lanes[l];
  }
  float m = x[0];
  for (; i < n; ++i) m = m < x[i] ? x[i] : m;
  for (int l = 0; l < 16; ++l) m = m < lanes[l] ? lanes[l] : m;
  return m;
}

[[gnu::always_inline]] inline float Sum(const float* x, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 16; ++l) lanes[l] += x[i + l];
  }
  float s = 0;
  for (; i < n; ++i) s += x[i];
  for (int l = 0; l < 16; ++l) s += lanes[l];
  return s;
}

// o[d] += sum_j p[j] * v[j * hd + d] for d < hd, j < n: value rows weighted
// into one head's output. The per-ISA versions below keep o in registers for
// the whole run of keys (the plain loop loads and stores it once per key) for
// the head sizes models use, and fall back to the plain loop for others.
[[gnu::always_inline]] inline void AddValuesPlain(const float* p, const float* v, int64_t n, int64_t hd, float* o) {
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t d = 0; d < hd; ++d) o[d] += p[j] * v[j * hd + d];
  }
}

// NV vectors of 16 outputs, two sets of accumulators (even and odd keys) so
// that consecutive FMAs into one register do not wait on each other.
template <int NV>
__attribute__((target("avx512f"))) inline void AddValuesAvx512Fixed(const float* p, const float* v, int64_t n,
                                                                    float* o) {
  constexpr int64_t hd = 16 * NV;
  __m512 a0[NV], a1[NV];
  for (int i = 0; i < NV; ++i) a0[i] = _mm512_loadu_ps(o + 16 * i), a1[i] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 2 <= n; j += 2) {
    const __m512 p0 = _mm512_set1_ps(p[j]), p1 = _mm512_set1_ps(p[j + 1]);
    for (int i = 0; i < NV; ++i) {
      a0[i] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v + j * hd + 16 * i), a0[i]);
      a1[i] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v + (j + 1) * hd + 16 * i), a1[i]);
    }
  }
  if (j < n) {
    const __m512 p0 = _mm512_set1_ps(p[j]);
    for (int i = 0; i < NV; ++i) a0[i] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v + j * hd + 16 * i), a0[i]);
  }
  for (int i = 0; i < NV; ++i) _mm512_storeu_ps(o + 16 * i, _mm512_add_ps(a0[i], a1[i]));
}

__attribute__((target("avx512f"))) inline void AddValuesAvx512(const float* p, const float* v, int64_t n, int64_t hd,
                                                               float* o) {
  switch (hd) {
    case 32:
      return AddValuesAvx512Fixed<2>(p, v, n, o);
    case 64:
      return AddValuesAvx512Fixed<4>(p, v, n, o);
    case 80:
      return AddValuesAvx512Fixed<5>(p, v, n, o);
    case 96:
      return AddValuesAvx512Fixed<6>(p, v, n, o);
    case 128:
      return AddValuesAvx512Fixed<8>(p, v, n, o);
    default:
      return AddValuesPlain(p, v, n, hd, o);
  }
}

// NV vectors of 8 outputs (at most 8, with the key's weight and a load in 16 registers).
template <int NV>
__attribute__((target("avx2,fma"))) inline void AddValuesAvx2Fixed(const float* p, const float* v, int64_t n,
                                                                   float* o) {
  constexpr int64_t hd = 8 * NV;
  __m256 a[NV];
  for (int i = 0; i < NV; ++i) a[i] = _mm256_loadu_ps(o + 8 * i);
  for (int64_t j = 0; j < n; ++j) {
    const __m256 pj = _mm256_set1_ps(p[j]);
    for (int i = 0; i < NV; ++i) a[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + j * hd + 8 * i), a[i]);
  }
  for (int i = 0; i < NV; ++i) _mm256_storeu_ps(o + 8 * i, a[i]);
}

__attribute__((target("avx2,fma"))) inline void AddValuesAvx2(const float* p, const float* v, int64_t n, int64_t hd,
                                                              float* o) {
  switch (hd) {
    case 32:
      return AddValuesAvx2Fixed<4>(p, v, n, o);
    case 64:
      return AddValuesAvx2Fixed<8>(p, v, n, o);
    default:
      return AddValuesPlain(p, v, n, hd, o);
  }
}

// Keys per block in the value pass: a block's value rows (16 KB at head size
// 64) stay in L1 while every query head of the group adds them.
constexpr int64_t kValueBlock = 64;

// The units [u0, u1): per (sequence, KV head), every key's scores for the G
// query heads that read it (the key row is loaded once and stays in L1 for
// all of them), a softmax per head, then the value rows added into the G
// outputs, kValueBlock keys at a time. scores: at least G * (key_end -
// key_begin) floats.
template <float (*Dot)(const float*, const float*, int64_t),
          void (*AddValues)(const float*, const float*, int64_t, int64_t, float*)>
[[gnu::always_inline]] inline void Units(const DecodeAttentionShape& s, const DecodeAttentionSeq* seqs, const float* q,
                                         const float* k, const float* v, float scale, int64_t u0, int64_t u1,
                                         float* out, std::vector<float>& scores) {
  const int64_t KV = s.num_kv_heads, G = s.num_heads / s.num_kv_heads, hd = s.head_dim;
  const int64_t head_stride = s.max_seq_len * hd, slot_stride = KV * head_stride;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t b = u / KV, kvh = u % KV;
    const DecodeAttentionSeq& seq = seqs[b];
    const int64_t L = seq.key_end - seq.key_begin;
    const int64_t base = seq.slot * slot_stride + kvh * head_stride + seq.key_begin * hd;
    const float* ks = k + base;
    const float* vs = v + base;
    const float* qs = q + (b * s.num_heads + kvh * G) * hd;  // query heads kvh * G .. + G
    float* os = out + (b * s.num_heads + kvh * G) * hd;
    if (static_cast<int64_t>(scores.size()) < G * L) scores.resize(G * L);
    float* sc = scores.data();
    for (int64_t j = 0; j < L; ++j) {
      for (int64_t g = 0; g < G; ++g) sc[g * L + j] = scale * Dot(qs + g * hd, ks + j * hd, hd);
    }
    for (int64_t g = 0; g < G; ++g) {
      float* row = sc + g * L;
      const float mx = Max(row, L);
      for (int64_t j = 0; j < L; ++j) row[j] = ExpNonPositive(row[j] - mx);
      const float inv = 1.0f / Sum(row, L);
      for (int64_t j = 0; j < L; ++j) row[j] *= inv;
      std::fill(os + g * hd, os + (g + 1) * hd, 0.0f);
    }
    for (int64_t j0 = 0; j0 < L; j0 += kValueBlock) {
      const int64_t n = std::min(kValueBlock, L - j0);
      for (int64_t g = 0; g < G; ++g) AddValues(sc + g * L + j0, vs + j0 * hd, n, hd, os + g * hd);
    }
  }
}

__attribute__((target("avx512f"))) void UnitsAvx512(const DecodeAttentionShape& s, const DecodeAttentionSeq* seqs,
                                                    const float* q, const float* k, const float* v, float scale,
                                                    int64_t u0, int64_t u1, float* out, std::vector<float>& scores) {
  Units<DotAvx512, AddValuesAvx512>(s, seqs, q, k, v, scale, u0, u1, out, scores);
}

__attribute__((target("avx2,fma"))) void UnitsAvx2(const DecodeAttentionShape& s, const DecodeAttentionSeq* seqs,
                                                   const float* q, const float* k, const float* v, float scale,
                                                   int64_t u0, int64_t u1, float* out, std::vector<float>& scores) {
  Units<DotAvx2, AddValuesAvx2>(s, seqs, q, k, v, scale, u0, u1, out, scores);
}

void UnitsPlain(const DecodeAttentionShape& s, const DecodeAttentionSeq* seqs, const float* q, const float* k,
                const float* v, float scale, int64_t u0, int64_t u1, float* out, std::vector<float>& scores) {
  Units<DotPlain, AddValuesPlain>(s, seqs, q, k, v, scale, u0, u1, out, scores);
}

using Isa = DecodeAttentionIsa;

Isa DetectIsa() {
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kPlain;
}

const Isa g_best = DetectIsa();
std::atomic<Isa> g_active{g_best};
std::atomic<bool> g_enabled{true};

}  // namespace

void DecodeAttention(const DecodeAttentionShape& shape, const DecodeAttentionSeq* seqs, const float* q, const float* k,
                     const float* v, float scale, int64_t unit_begin, int64_t unit_end, float* out) {
  thread_local std::vector<float> scores;
  switch (g_active.load(std::memory_order_relaxed)) {
    case Isa::kAvx512:
      return UnitsAvx512(shape, seqs, q, k, v, scale, unit_begin, unit_end, out, scores);
    case Isa::kAvx2:
      return UnitsAvx2(shape, seqs, q, k, v, scale, unit_begin, unit_end, out, scores);
    case Isa::kPlain:
      break;
  }
  UnitsPlain(shape, seqs, q, k, v, scale, unit_begin, unit_end, out, scores);
}

const char* DecodeAttentionIsaName(DecodeAttentionIsa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kPlain:
      break;
  }
  return "plain";
}

DecodeAttentionIsa DecodeAttentionBestIsa() { return g_best; }

DecodeAttentionIsa DecodeAttentionActiveIsa() { return g_active.load(std::memory_order_relaxed); }

bool SetDecodeAttentionIsa(DecodeAttentionIsa isa) {
  // A CPU with AVX-512F has AVX2 and FMA too.
  if (static_cast<int>(isa) > static_cast<int>(g_best)) return false;
  g_active.store(isa, std::memory_order_relaxed);
  return true;
}

bool DecodeAttentionEnabled() { return g_enabled.load(std::memory_order_relaxed); }

void SetDecodeAttentionEnabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }

}  // namespace skillpack
