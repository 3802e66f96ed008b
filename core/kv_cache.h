// A pool of per-sequence key/value caches. Each running sequence owns one slot;
// per layer the keys and values live in preallocated tensors
// [num_slots, num_kv_heads, max_seq_len, head_dim], so decoding appends in
// place; a decode step on the CPU reads each sequence's rows where they are
// (core/decode_attention.h), and other steps attend through a view of
// consecutive slots or a gathered copy of the batch's.
#ifndef SKILLPACK_CORE_KV_CACHE_H_
#define SKILLPACK_CORE_KV_CACHE_H_

#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model_config.h"
#include "core/status.h"

namespace skillpack {

class KvCache {
 public:
  // Allocates num_slots * max_seq_len positions for every layer (zeroed).
  static StatusOr<std::unique_ptr<KvCache>> Create(const ModelConfig& config, int64_t num_slots, int64_t max_seq_len,
                                                   const at::TensorOptions& options);

  int64_t num_slots() const { return static_cast<int64_t>(length_.size()); }
  int64_t max_seq_len() const { return max_seq_len_; }
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }

  // Takes a free slot (length 0). RESOURCE_EXHAUSTED when none is left.
  StatusOr<int32_t> Acquire();
  // Returns a slot to the pool. REQUIRES: slot was acquired and not yet released.
  void Release(int32_t slot);

  // Tokens already cached for `slot`.
  int64_t length(int32_t slot) const { return length_[slot]; }
  void set_length(int32_t slot, int64_t len) { length_[slot] = len; }

  at::Tensor& keys(int64_t layer) { return k_[layer]; }
  at::Tensor& values(int64_t layer) { return v_[layer]; }
  int64_t Bytes() const;

 private:
  KvCache() = default;
  int64_t max_seq_len_ = 0;
  std::vector<at::Tensor> k_, v_;
  std::vector<int64_t> length_;
  std::vector<int32_t> free_;
  std::vector<bool> in_use_;
};

}  // namespace skillpack

#endif  // SKILLPACK_CORE_KV_CACHE_H_
