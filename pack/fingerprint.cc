#include "pack/fingerprint.h"

#include <ATen/ATen.h>

#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/json_util.h"

namespace skillpack {
namespace {

// Appends the sampled values of `t` (see the header) as float32 little-endian.
void HashTensorSample(const at::Tensor& t, Sha256& h) {
  const int64_t n = t.numel();
  if (n == 0) return;
  at::Tensor flat = t.detach().reshape({-1});
  at::Tensor sample;
  if (n <= kFingerprintFullTensorMax) {
    sample = flat;
  } else {
    std::vector<int64_t> idx;
    idx.reserve(kFingerprintChunks * kFingerprintChunkLen);
    const int64_t span = n - kFingerprintChunkLen;
    const int64_t last = kFingerprintChunks - 1;
    for (int64_t c = 0; c < kFingerprintChunks; ++c) {
      // floor(c * span / last) without overflow.
      const int64_t start = (span / last) * c + (span % last) * c / last;
      for (int64_t k = 0; k < kFingerprintChunkLen; ++k) idx.push_back(start + k);
    }
    at::Tensor index = at::tensor(idx, at::kLong).to(flat.device());
    sample = flat.index_select(0, index);
  }
  sample = sample.to(at::kCPU, at::kFloat).contiguous();
  const float* v = sample.data_ptr<float>();
  std::vector<uint8_t> bytes(static_cast<size_t>(sample.numel()) * 4);
  for (int64_t i = 0; i < sample.numel(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], 4);
    for (int k = 0; k < 4; ++k) bytes[i * 4 + k] = static_cast<uint8_t>(bits >> (8 * k));
  }
  h.Update(bytes.data(), bytes.size());
}

}  // namespace

bool IsValidFingerprint(absl::string_view fingerprint) {
  constexpr absl::string_view kPrefix = "sha256:";
  return absl::StartsWith(fingerprint, kPrefix) && IsSha256Hex(fingerprint.substr(kPrefix.size()));
}

StatusOr<std::string> BaseFingerprint(const ModelWeights& w) {
  try {
    const ModelConfig& c = w.config();
    Sha256 h;
    h.Update("skillpack-base-fingerprint-v1\n");
    const Json config = {{"model_type", c.model_type},
                         {"vocab_size", c.vocab_size},
                         {"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size},
                         {"num_hidden_layers", c.num_hidden_layers},
                         {"num_attention_heads", c.num_attention_heads},
                         {"num_key_value_heads", c.num_key_value_heads},
                         {"head_dim", c.head_dim},
                         {"tie_word_embeddings", c.tie_word_embeddings}};
    h.Update(config.dump() + "\n");
    for (const auto& [name, t] : w.tensors()) {
      h.Update(absl::StrCat(name, "\n", absl::StrJoin(t.sizes(), ","), "\n"));
      HashTensorSample(t, h);
    }
    return absl::StrCat("sha256:", h.FinalHex());
  } catch (const std::exception& e) {
    return StatusFromException(e, "fingerprinting base weights");
  }
}

}  // namespace skillpack
