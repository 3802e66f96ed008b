#include "core/decode_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace skillpack {
namespace {

// Sums of 16 products at a time in 16 separate lanes, which the compiler
// turns into one vector FMA per step in each build below (a single running
// sum would be one serial chain: float additions may not be reordered).
[[gnu::always_inline]] inline float Dot(const float* a, const float* b, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 16; ++l) lanes[l] += a[i + l] * b[i + l];
  }
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int l = 0; l < 16; ++l) s += lanes[l];
  return s;
}

// y += a * x over n floats.
[[gnu::always_inline]] inline void Axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// The units [u0, u1): per (sequence, KV head), every key's scores for the G
// query heads that read it (the key row is loaded once and stays in L1 for
// all of them), a softmax per head, then every value row added into the G
// outputs. scores: at least G * (key_end - key_begin) floats.
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
      const float mx = *std::max_element(row, row + L);
      float sum = 0;
      for (int64_t j = 0; j < L; ++j) sum += (row[j] = std::exp(row[j] - mx));
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < L; ++j) row[j] *= inv;
      std::fill(os + g * hd, os + (g + 1) * hd, 0.0f);
    }
    for (int64_t j = 0; j < L; ++j) {
      for (int64_t g = 0; g < G; ++g) Axpy(sc[g * L + j], vs + j * hd, os + g * hd, hd);
    }
  }
}

__attribute__((target("avx512f"))) void UnitsAvx512(const DecodeAttentionShape& s, const DecodeAttentionSeq* seqs,
                                                    const float* q, const float* k, const float* v, float scale,
                                                    int64_t u0, int64_t u1, float* out, std::vector<float>& scores) {
  Units(s, seqs, q, k, v, scale, u0, u1, out, scores);
}

__attribute__((target("avx2,fma"))) void UnitsAvx2(const DecodeAttentionShape& s, const DecodeAttentionSeq* seqs,
                                                   const float* q, const float* k, const float* v, float scale,
                                                   int64_t u0, int64_t u1, float* out, std::vector<float>& scores) {
  Units(s, seqs, q, k, v, scale, u0, u1, out, scores);
}

void UnitsPlain(const DecodeAttentionShape& s, const DecodeAttentionSeq* seqs, const float* q, const float* k,
                const float* v, float scale, int64_t u0, int64_t u1, float* out, std::vector<float>& scores) {
  Units(s, seqs, q, k, v, scale, u0, u1, out, scores);
}

enum class Isa { kPlain, kAvx2, kAvx512 };

Isa DetectIsa() {
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kPlain;
}

const Isa g_isa = DetectIsa();
std::atomic<bool> g_enabled{true};

}  // namespace

void DecodeAttention(const DecodeAttentionShape& shape, const DecodeAttentionSeq* seqs, const float* q, const float* k,
                     const float* v, float scale, int64_t unit_begin, int64_t unit_end, float* out) {
  thread_local std::vector<float> scores;
  switch (g_isa) {
    case Isa::kAvx512:
      return UnitsAvx512(shape, seqs, q, k, v, scale, unit_begin, unit_end, out, scores);
    case Isa::kAvx2:
      return UnitsAvx2(shape, seqs, q, k, v, scale, unit_begin, unit_end, out, scores);
    case Isa::kPlain:
      break;
  }
  UnitsPlain(shape, seqs, q, k, v, scale, unit_begin, unit_end, out, scores);
}

const char* DecodeAttentionIsa() {
  switch (g_isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kPlain:
      break;
  }
  return "plain";
}

bool DecodeAttentionEnabled() { return g_enabled.load(std::memory_order_relaxed); }

void SetDecodeAttentionEnabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }

}  // namespace skillpack
