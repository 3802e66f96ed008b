// Attention for a decode step on the CPU: one new query per sequence, read
// against that sequence's keys and values where the KV cache keeps them. The
// ATen path (core/model.cc's Attend) gathers every sequence's cache rows into
// a batch tensor, builds a mask and runs B·KV tiny GEMMs and a masked softmax:
// a dozen ops and a copy of the cache per layer, for a few MFLOP. Here each
// (sequence, KV head) pair is one piece of work that reads its keys and values
// once, for all the query heads that share them (grouped-query attention). No
// libtorch here: raw float32 pointers; core/model.cc wraps it for tensors and
// threads.
//
// Three builds of the same loops, chosen at run time by what the CPU has:
// AVX-512, AVX2+FMA, and plain C++ for other CPUs. They differ only in the
// order of the additions; all take e^x from one polynomial (relative error
// under 2e-7), not from expf.
#ifndef SKILLPACK_CORE_DECODE_ATTENTION_H_
#define SKILLPACK_CORE_DECODE_ATTENTION_H_

#include <cstdint>

namespace skillpack {

// The KV cache's layout ([slots][kv heads][positions][head_dim], float32,
// core/kv_cache.h) and the model's head counts.
struct DecodeAttentionShape {
  int64_t num_heads = 0;     // query heads H, a multiple of num_kv_heads
  int64_t num_kv_heads = 0;  // KV heads
  int64_t head_dim = 0;
  int64_t max_seq_len = 0;  // positions per slot and head in the cache
};

// One sequence of the step: its cache slot and the positions [key_begin,
// key_end) its query sees (causal, and within a sliding window when the model
// has one); key_end > key_begin >= 0.
struct DecodeAttentionSeq {
  int64_t slot = 0;
  int64_t key_begin = 0;
  int64_t key_end = 0;
};

// For every sequence b, query head h and d < head_dim:
//   out[(b * H + h) * head_dim + d] = sum_j p_j * v[slot_b][h / G][j][d],
//   p = softmax_j(scale * q_h · k[slot_b][h / G][j]) over j in [key_begin, key_end),
// with q [B][H][head_dim] (q[(b * H + h) * head_dim + d]), G = H / KV, and k, v
// the cache tensors' data. Computes the work units [unit_begin, unit_end) of the
// B * KV units (unit u = (b = u / KV, kv head u % KV)), so callers can split
// them across threads; units write disjoint parts of out.
void DecodeAttention(const DecodeAttentionShape& shape, const DecodeAttentionSeq* seqs, const float* q, const float* k,
                     const float* v, float scale, int64_t unit_begin, int64_t unit_end, float* out);

// The builds; DecodeAttention runs the best one this CPU has unless a test or
// benchmark chooses another.
enum class DecodeAttentionIsa { kPlain, kAvx2, kAvx512 };
const char* DecodeAttentionIsaName(DecodeAttentionIsa isa);  // "plain", "avx2", "avx512"
DecodeAttentionIsa DecodeAttentionBestIsa();
DecodeAttentionIsa DecodeAttentionActiveIsa();
// Returns false, changing nothing, when this CPU cannot run `isa`.
bool SetDecodeAttentionIsa(DecodeAttentionIsa isa);

// Whether core/model.cc's decode steps use DecodeAttention (true, the default)
// or the ATen path; benchmarks and tests compare the two in one run.
bool DecodeAttentionEnabled();
void SetDecodeAttentionEnabled(bool enabled);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_DECODE_ATTENTION_H_
