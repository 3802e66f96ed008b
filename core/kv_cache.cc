#include "core/kv_cache.h"

#include <ATen/ATen.h>

namespace skillpack {

StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const ModelConfig& config, int64_t num_slots, int64_t max_seq_len,
                                                   const at::TensorOptions& options) {
  if (num_slots <= 0 || max_seq_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache needs positive slots and length, got ", num_slots, " and ", max_seq_len));
  }
  std::unique_ptr<KvCache> c(new KvCache());
  c->max_seq_len_ = max_seq_len;
  try {
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
      c->k_.push_back(at::zeros({num_slots, config.num_key_value_heads, max_seq_len, config.head_dim}, options));
      c->v_.push_back(at::zeros({num_slots, config.num_key_value_heads, max_seq_len, config.head_dim}, options));
    }
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate KV cache: ", e.what()));
  }
  c->length_.assign(num_slots, 0);
  c->in_use_.assign(num_slots, false);
  for (int64_t s = num_slots - 1; s >= 0; --s) c->free_.push_back(static_cast<int32_t>(s));
  return c;
}

StatusOr<int32_t> KvCache::Acquire() {
  if (free_.empty()) return absl::ResourceExhaustedError("no free KV cache slot");
  int32_t s = free_.back();
  free_.pop_back();
  in_use_[s] = true;
  length_[s] = 0;
  return s;
}

void KvCache::Release(int32_t slot) {
  if (slot < 0 || slot >= num_slots() || !in_use_[slot]) return;
  in_use_[slot] = false;
  length_[slot] = 0;
  free_.push_back(slot);
}

int64_t KvCache::Bytes() const {
  int64_t n = 0;
  for (const auto& t : k_) n += t.numel() * static_cast<int64_t>(t.element_size());
  return 2 * n;
}

}  // namespace skillpack
