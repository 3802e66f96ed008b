#include "core/model.h"

#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

namespace skillpack {
namespace {

constexpr double kMaskedScore = -1e30;  // finite, so a fully masked row cannot produce NaN

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
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

at::Tensor Mlp(const LayerWeights& lw, const at::Tensor& h) {
  at::Tensor g = Linear(h, lw.gate, lw.gate_bias);
  at::Tensor u = Linear(h, lw.up, lw.up_bias);
  return Linear(at::silu(g) * u, lw.down, lw.down_bias);
}

// Query/key/value projections of h [B,T,D] with RoPE applied: q [B,H,T,hd], k/v [B,KV,T,hd].
struct Qkv {
  at::Tensor q, k, v;
};
Qkv Project(const ModelConfig& c, const LayerWeights& lw, const at::Tensor& h, const at::Tensor& cos,
            const at::Tensor& sin) {
  const int64_t B = h.size(0), T = h.size(1), hd = c.head_dim;
  Qkv r;
  r.q = Linear(h, lw.q, lw.q_bias).view({B, T, c.num_attention_heads, hd}).transpose(1, 2);
  r.k = Linear(h, lw.k, lw.k_bias).view({B, T, c.num_key_value_heads, hd}).transpose(1, 2);
  r.v = Linear(h, lw.v, lw.v_bias).view({B, T, c.num_key_value_heads, hd}).transpose(1, 2);
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
    at::Tensor x = at::embedding(w.embed_tokens(), tokens);
    auto [cos, sin] = Rope(positions, x.scalar_type());
    at::Tensor allowed = AttentionMask(positions, total_max, config_.sliding_window, at::Tensor());
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
      const LayerWeights& lw = w.layers()[l];
      Qkv p = Project(config_, lw, RmsNorm(x, lw.input_norm, config_.rms_norm_eps), cos, sin);
      at::Tensor& kc = cache.keys(l);
      at::Tensor& vc = cache.values(l);
      for (int64_t b = 0; b < B; ++b) {
        kc[slots[b]].narrow(1, lens[b], counts[b]).copy_(p.k[b].narrow(1, 0, counts[b]));
        vc[slots[b]].narrow(1, lens[b], counts[b]).copy_(p.v[b].narrow(1, 0, counts[b]));
      }
      at::Tensor keys = consecutive ? kc.narrow(0, slots[0], B) : kc.index_select(0, slot_index);
      at::Tensor vals = consecutive ? vc.narrow(0, slots[0], B) : vc.index_select(0, slot_index);
      keys = keys.narrow(2, 0, total_max);
      vals = vals.narrow(2, 0, total_max);
      x = x + Linear(Attend(p.q, keys, vals, allowed, config_.num_kv_groups()), lw.o, lw.o_bias);
      x = x + Mlp(lw, RmsNorm(x, lw.post_attention_norm, config_.rms_norm_eps));
    }
    for (int64_t b = 0; b < B; ++b) cache.set_length(slots[b], lens[b] + counts[b]);
    if (!all_logits) {
      std::vector<int64_t> last(B);
      for (int64_t b = 0; b < B; ++b) last[b] = b * T + counts[b] - 1;
      x = x.reshape({B * T, -1}).index_select(0, at::tensor(last, lopt).to(device));
    }
    at::Tensor h = RmsNorm(x, w.final_norm(), config_.rms_norm_eps);
    return at::linear(h, w.lm_head()).to(at::kFloat);
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
