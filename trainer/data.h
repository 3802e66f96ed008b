// Training data for the trainer: SFT records ({"prompt","response"} or
// {"messages":[...]} JSONL), preference pairs ({"prompt","chosen","rejected"}
// JSONL), their tokenization (prompt ids, then response ids and one end
// token, truncated to a length limit) and right-padded batches with attention
// and loss masks.
#ifndef SKILLPACK_TRAINER_DATA_H_
#define SKILLPACK_TRAINER_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/status.h"
#include "core/tokenizer.h"

namespace skillpack {

// One supervised example. When `templated` the prompt is already rendered by a
// chat template (it carries its own BOS and special tokens); otherwise it is
// plain text and gets the tokenizer's BOS.
struct SftRecord {
  std::string prompt;
  std::string response;
  bool templated = false;
};

struct PreferenceRecord {
  std::string prompt;
  std::string chosen;
  std::string rejected;
  bool templated = false;
};

// Reads JSONL (blank lines skipped). Each line is {"prompt": s, "response": s}
// or {"messages": [{"role", "content"}, ...]} whose last message is the
// assistant's response and the others are rendered with the tokenizer's chat
// template (add_generation_prompt). INVALID_ARGUMENT naming the file, line and
// field for anything else; an empty file is an error too.
StatusOr<std::vector<SftRecord>> ReadSftJsonl(const std::string& path, const Tokenizer& tokenizer);
// Reads {"prompt", "chosen", "rejected"} JSONL (all strings).
StatusOr<std::vector<PreferenceRecord>> ReadPreferenceJsonl(const std::string& path);

Status WriteSftJsonl(const std::string& path, const std::vector<SftRecord>& records);
Status WritePreferenceJsonl(const std::string& path, const std::vector<PreferenceRecord>& records);

// Token ids of one prompt + response; the loss covers positions >= prompt_len.
struct TokenizedSequence {
  std::vector<int32_t> tokens;
  int64_t prompt_len = 0;
  int64_t num_response_tokens() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
};

class SequenceEncoder {
 public:
  // `end_id` is appended to every response (the model's first eos id).
  // Sequences are cut to `max_len` tokens.
  SequenceEncoder(const Tokenizer& tokenizer, int32_t end_id, int64_t max_len);

  // Prompt ids: plain prompts get BOS; special tokens written in prompts are parsed.
  std::vector<int32_t> EncodePrompt(absl::string_view prompt, bool templated) const;
  // Prompt + response + end id. Response text is encoded without parsing
  // special tokens. INVALID_ARGUMENT when the prompt leaves no room for one
  // response token within max_len.
  StatusOr<TokenizedSequence> Encode(absl::string_view prompt, absl::string_view response, bool templated) const;

 private:
  const Tokenizer& tokenizer_;
  int32_t end_id_;
  int64_t max_len_;
};

// Right-padded batch of B sequences, T = the longest.
struct TokenBatch {
  at::Tensor tokens;          // int64 [B, T]; padding is id 0
  at::Tensor attention_mask;  // int64 [B, T]; 1 for real tokens
  at::Tensor targets;         // int64 [B, T-1]: tokens[:, 1:] where that token is a
                              // response token, else -100 (ignored)
  int64_t num_target_tokens = 0;
};

// REQUIRES: `seqs` non-empty, every sequence has >= 2 tokens.
TokenBatch MakeTokenBatch(const std::vector<const TokenizedSequence*>& seqs);
// The batch of seqs[i] for each i in `examples` (same requirements).
TokenBatch MakeTokenBatch(const std::vector<TokenizedSequence>& seqs, const std::vector<int64_t>& examples);
// Response tokens of seqs[i] over `examples`: the SFT and distillation objectives' units.
double ResponseTokens(const std::vector<TokenizedSequence>& seqs, const std::vector<int64_t>& examples);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_DATA_H_
