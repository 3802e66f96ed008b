#include "pack/calibration.h"

#include <algorithm>
#include <memory>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "core/model.h"
#include "pack/codec/quantize.h"

namespace skillpack {
namespace {

// The text of one JSONL object: "text", or "prompt" + "response".
StatusOr<std::string> JsonlSampleText(const Json& j, absl::string_view what) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  if (j.contains("text")) return GetField<std::string>(j, "text", what);
  if (j.contains("prompt") && j.contains("response")) {
    ASSIGN_OR_RETURN(std::string prompt, GetField<std::string>(j, "prompt", what));
    ASSIGN_OR_RETURN(std::string response, GetField<std::string>(j, "response", what));
    return prompt + response;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": object has neither \"text\" nor \"prompt\" and \"response\""));
}

// One module-input Hessian and the modules that share it.
struct InputSlot {
  std::vector<std::string> modules;
  std::unique_ptr<HessianAccumulator> acc;
};

// A batch of right-padded sequences moving through the layers.
struct Batch {
  at::Tensor hidden;  // [B, T, hidden]
  at::Tensor mask;    // int64 [B, T], 1 for real tokens
  at::Tensor valid;   // int64 [n] flat indices of real tokens in [B * T]
};

at::Tensor Rows(const at::Tensor& x, const at::Tensor& valid) {
  return x.reshape({-1, x.size(-1)}).index_select(0, valid);
}

}  // namespace

const at::Tensor* CalibrationStats::Find(const std::string& module_name) const {
  auto it = hessians.find(module_name);
  return it == hessians.end() ? nullptr : &it->second;
}

StatusOr<std::vector<std::vector<int32_t>>> LoadCalibrationSequences(const std::string& path,
                                                                     const Tokenizer& tokenizer, int64_t max_samples,
                                                                     int64_t max_len) {
  if (max_samples < 1) {
    return absl::InvalidArgumentError(absl::StrCat("calibration samples must be >= 1, got ", max_samples));
  }
  if (max_len < 1) {
    return absl::InvalidArgumentError(absl::StrCat("calibration length must be >= 1, got ", max_len));
  }
  ASSIGN_OR_RETURN(std::string contents, ReadFileToString(path));
  std::vector<std::vector<int32_t>> out;
  bool jsonl = false, first = true;
  int64_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_no;
    if (static_cast<int64_t>(out.size()) >= max_samples) break;
    absl::string_view stripped = absl::StripAsciiWhitespace(line);
    if (stripped.empty()) continue;
    if (first) {
      jsonl = stripped[0] == '{';
      first = false;
    }
    std::string text(line);
    if (jsonl) {
      const std::string what = absl::StrCat(path, " line ", line_no);
      ASSIGN_OR_RETURN(Json j, ParseJson(stripped, what));
      ASSIGN_OR_RETURN(text, JsonlSampleText(j, what));
    }
    std::vector<int32_t> ids =
        tokenizer.Encode(text, /*parse_special=*/false, /*add_bos=*/tokenizer.bos_id().has_value());
    if (static_cast<int64_t>(ids.size()) > max_len) ids.resize(max_len);
    if (!ids.empty()) out.push_back(std::move(ids));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("calibration file ", path, " has no samples"));
  }
  return out;
}

StatusOr<CalibrationStats> CaptureCalibration(const ModelWeights& base,
                                              const std::vector<std::vector<int32_t>>& sequences,
                                              const CaptureOptions& options) {
  const ModelConfig& c = base.config();
  if (sequences.empty()) return absl::InvalidArgumentError("no calibration sequences");
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("calibration batch size must be >= 1, got ", options.batch_size));
  }
  for (size_t i = 0; i < sequences.size(); ++i) {
    const auto& s = sequences[i];
    if (s.empty()) return absl::InvalidArgumentError(absl::StrCat("calibration sequence ", i, " is empty"));
    if (static_cast<int64_t>(s.size()) > c.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat("calibration sequence ", i, " has ", s.size(),
                                                     " tokens, more than max_position_embeddings ",
                                                     c.max_position_embeddings));
    }
    for (int32_t t : s) {
      if (t < 0 || t >= c.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("calibration sequence ", i, ": token id ", t, " out of range [0, ", c.vocab_size, ")"));
      }
    }
  }
  try {
    c10::InferenceMode guard;
    const at::Device device = base.embed_tokens().device();
    const at::TensorOptions lopt = at::TensorOptions().dtype(at::kLong);
    Transformer model(c);

    // Embeddings, batch by batch.
    std::vector<Batch> batches;
    int64_t num_tokens = 0, t_max = 0;
    for (size_t b0 = 0; b0 < sequences.size(); b0 += options.batch_size) {
      const size_t b1 = std::min(sequences.size(), b0 + static_cast<size_t>(options.batch_size));
      const int64_t B = static_cast<int64_t>(b1 - b0);
      int64_t T = 0;
      for (size_t i = b0; i < b1; ++i) T = std::max<int64_t>(T, sequences[i].size());
      std::vector<int64_t> tok(B * T, 0), mask(B * T, 0), valid;
      for (int64_t b = 0; b < B; ++b) {
        const auto& s = sequences[b0 + b];
        for (size_t t = 0; t < s.size(); ++t) {
          tok[b * T + t] = s[t];
          mask[b * T + t] = 1;
          valid.push_back(b * T + static_cast<int64_t>(t));
        }
      }
      Batch batch;
      at::Tensor tokens = at::tensor(tok, lopt).view({B, T}).to(device);
      batch.mask = at::tensor(mask, lopt).view({B, T}).to(device);
      batch.valid = at::tensor(valid, lopt).to(device);
      batch.hidden = at::embedding(base.embed_tokens(), tokens);
      num_tokens += static_cast<int64_t>(valid.size());
      t_max = std::max(t_max, T);
      batches.push_back(std::move(batch));
    }

    CalibrationStats stats;
    stats.num_sequences = static_cast<int64_t>(sequences.size());
    stats.num_tokens = num_tokens;
    const int64_t attn_width = c.num_attention_heads * c.head_dim;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      auto name = [l](absl::string_view s) { return LayerTensorName(l, absl::StrCat(s, ".weight")); };
      InputSlot attn{{name("self_attn.q_proj"), name("self_attn.k_proj"), name("self_attn.v_proj")},
                     std::make_unique<HessianAccumulator>(c.hidden_size)};
      InputSlot o{{name("self_attn.o_proj")}, std::make_unique<HessianAccumulator>(attn_width)};
      InputSlot mlp{{name("mlp.gate_proj"), name("mlp.up_proj")}, std::make_unique<HessianAccumulator>(c.hidden_size)};
      InputSlot down{{name("mlp.down_proj")}, std::make_unique<HessianAccumulator>(c.intermediate_size)};
      // Inputs of layer l come from layer l-1's outputs of ALL batches; each
      // batch's hidden state is replaced by layer l's output once, after its
      // taps are recorded (the swap happens once per layer).
      for (Batch& batch : batches) {
        LayerActivations taps;
        at::Tensor next = model.LayerForward(base, l, batch.hidden, batch.mask, &taps);
        RETURN_IF_ERROR(attn.acc->Add(Rows(taps.attn_in, batch.valid)));
        RETURN_IF_ERROR(o.acc->Add(Rows(taps.o_in, batch.valid)));
        RETURN_IF_ERROR(mlp.acc->Add(Rows(taps.mlp_in, batch.valid)));
        RETURN_IF_ERROR(down.acc->Add(Rows(taps.down_in, batch.valid)));
        batch.hidden = std::move(next);
      }
      for (InputSlot* slot : {&attn, &o, &mlp, &down}) {
        at::Tensor h = slot->acc->Hessian();
        for (const std::string& m : slot->modules) stats.hessians[m] = h;
      }
      if (options.on_layer_done) {
        at::Tensor all = at::zeros({stats.num_sequences, t_max, c.hidden_size}, batches[0].hidden.options());
        int64_t row = 0;
        for (const Batch& batch : batches) {
          const int64_t B = batch.hidden.size(0), T = batch.hidden.size(1);
          all.narrow(0, row, B).narrow(1, 0, T).copy_(batch.hidden * batch.mask.unsqueeze(-1));
          row += B;
        }
        options.on_layer_done(l, all);
      }
    }
    return stats;
  } catch (const std::exception& e) {
    return StatusFromException(e, "capturing calibration statistics");
  }
}

}  // namespace skillpack
