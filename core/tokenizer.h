// Tokenizers: loads a Hugging Face tokenizer.json holding a byte-level BPE
// model (GPT-2 / Llama-3 / Qwen2 style) and encodes text to token ids and ids
// back to text; an incremental decoder for streaming; and the generator of the
// byte-level tokenizer.json / tokenizer_config.json used by the project's tiny
// models.
//
// Supported tokenizer.json subset (anything else is rejected at load time with
// an error naming the unsupported component):
//  - model: type "BPE" with `vocab`, `merges` ("a b" strings or ["a", "b"]
//    pairs), `ignore_merges`, `unk_token`. `dropout`, `byte_fallback`,
//    `continuing_subword_prefix` and `end_of_word_suffix` must be unset.
//  - normalizer: null, "NFC", "NFD", "NFKC", "NFKD", or a Sequence of those
//    (possibly empty). Applied with utf8proc to the text between added tokens
//    before pre-tokenization (Qwen2/Qwen3 files declare NFC); bytes that are
//    not valid UTF-8 pass through unchanged.
//  - pre_tokenizer: ByteLevel (use_regex with the GPT-2 pattern,
//    add_prefix_space), Split (Regex or String pattern; behavior Isolated or
//    Removed; invert true or false), or a Sequence of those. A ByteLevel step
//    must be present (it selects the byte-level alphabet).
//  - decoder: ByteLevel (or null, treated as ByteLevel).
//  - post_processor: ignored; BOS is added by Encode(..., add_bos=true).
//  - added_tokens: matched in the raw text before pre-tokenization, longest
//    match first; `lstrip` / `rstrip` are honoured, `single_word` is not.
// Regexes are compiled with PCRE2 (UTF + UCP, JIT when available); Hugging Face
// uses Oniguruma, whose Unicode classes agree with PCRE2's for these patterns.
#ifndef SKILLPACK_CORE_TOKENIZER_H_
#define SKILLPACK_CORE_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "core/chat_template.h"
#include "core/status.h"

namespace skillpack {

namespace tokenizer_internal {
class PreTokenizerStep;
}  // namespace tokenizer_internal

// An immutable tokenizer. All const methods are safe to call concurrently.
class Tokenizer {
 public:
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Parses a tokenizer.json text. `what` names its source in error messages.
  // `tokenizer_config_json`, when non-empty, is a tokenizer_config.json text
  // from which bos_token, eos_token and chat_template are read (strings or
  // {"content": ...} objects; a chat_template list takes the entry named
  // "default"). INVALID_ARGUMENT on malformed or unsupported input.
  static StatusOr<std::unique_ptr<Tokenizer>> FromJson(absl::string_view tokenizer_json, absl::string_view what,
                                                       absl::string_view tokenizer_config_json = "");

  // Loads dir/tokenizer.json plus dir/tokenizer_config.json when that exists.
  // NOT_FOUND when dir/tokenizer.json does not exist.
  static StatusOr<std::unique_ptr<Tokenizer>> FromModelDir(const std::string& dir);

  // Token ids of `text` (any bytes; invalid UTF-8 is encoded byte by byte).
  // With `parse_special`, special added tokens written in the text (e.g.
  // "<|eot_id|>") become their ids; without it they are encoded as plain text.
  // Non-special added tokens are always matched (as Hugging Face does).
  // `add_bos` prepends bos_id() when the tokenizer has one.
  std::vector<int32_t> Encode(absl::string_view text, bool parse_special = true, bool add_bos = false) const;

  // Text of `ids`. Ids out of range or unused decode to "". With
  // `skip_special`, special tokens decode to "". Byte sequences that are not
  // valid UTF-8 become U+FFFD (one per maximal invalid subpart, as
  // String::from_utf8_lossy / Python's errors="replace" do), so the result is
  // always valid UTF-8. When clean_up_tokenization_spaces() is set, the space
  // before ".", "?", "!", ",", "n't", "'m", "'s", "'ve", "'re" is dropped and
  // " ' " becomes "'" (transformers' clean_up_tokenization, applied in one
  // left-to-right pass: it differs from transformers' pass per pattern only
  // where removing " ' " creates a new match, e.g. "  ' m" or " n ' t").
  // Decode(Encode(s, false)) == s for valid NFC-invariant UTF-8 s when the
  // tokenizer has no normalizer and no clean-up.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // Raw bytes token `id` stands for; "" for ids out of range or unused. May be
  // a fragment of a UTF-8 character.
  const std::string& TokenBytes(int32_t id) const;

  // True for added tokens marked "special"; false for everything else.
  bool IsSpecial(int32_t id) const;

  // Largest id in the vocabulary or added tokens, plus one.
  int32_t vocab_size() const { return static_cast<int32_t>(id_bytes_.size()); }

  // Id of an added token by its content (e.g. "<|eot_id|>"), else of a model
  // vocabulary entry spelled `token_content` in the byte-level alphabet.
  std::optional<int32_t> TokenToId(absl::string_view token_content) const;

  // Id of tokenizer_config.json's bos_token; nullopt when there is none.
  std::optional<int32_t> bos_id() const { return bos_id_; }

  // Ids that end a generation: eos_token's, then those of <|eot_id|>,
  // <|im_end|> and <|end_of_text|> where present; no duplicates.
  std::vector<int32_t> eos_ids() const { return eos_ids_; }

  // tokenizer_config.json's clean_up_tokenization_spaces (false when absent,
  // as in current transformers).
  bool clean_up_tokenization_spaces() const { return clean_up_tokenization_spaces_; }

  // `text` after the tokenizer.json normalizer (unchanged when there is none).
  std::string Normalize(absl::string_view text) const;

  // Raw Jinja chat_template from tokenizer_config.json ("" if none).
  const std::string& chat_template() const { return chat_template_; }

  // The pre-tokenizer's pieces of Normalize(text) (raw bytes, before the
  // byte-level mapping; add_prefix_space already applied). Added tokens are
  // not split out. Exposed for tests and diagnostics.
  std::vector<std::string> PreTokenize(absl::string_view text) const;

 private:
  struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
  };
  // A pair-merge: the rank of the merge rule and the id it produces.
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };

  friend class TokenizerLoader;
  Tokenizer();

  // Appends the ids of one pre-tokenized piece (raw bytes) to *out.
  void EncodePiece(absl::string_view piece, std::vector<int32_t>* out) const;
  // Appends the ids of text holding no added tokens to *out.
  void EncodeOrdinary(absl::string_view text, std::vector<int32_t>* out) const;

  // Model vocabulary: token spelled in the byte-level alphabet -> id.
  absl::flat_hash_map<std::string, int32_t> vocab_;
  // (left id << 32 | right id) -> merge.
  absl::flat_hash_map<uint64_t, Merge> merges_;
  // Id of the single-byte token for each byte; -1 when the vocab lacks it.
  std::array<int32_t, 256> byte_ids_{};
  std::optional<int32_t> unk_id_;
  bool ignore_merges_ = false;

  // utf8proc options of each normalization form to apply, in order.
  std::vector<int> normalizers_;
  std::vector<std::unique_ptr<tokenizer_internal::PreTokenizerStep>> pre_tokenizer_;

  std::vector<AddedToken> added_tokens_;
  absl::flat_hash_map<std::string, int32_t> added_by_content_;
  // For each first byte: indices into added_tokens_, longest content first.
  std::array<std::vector<int32_t>, 256> added_by_first_byte_;

  // Per id: the raw bytes it decodes to, and whether it is special.
  std::vector<std::string> id_bytes_;
  std::vector<bool> special_;

  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  std::string chat_template_;
  bool clean_up_tokenization_spaces_ = false;
};

// Streaming detokenizer: feed ids one at a time; text comes out only as whole
// UTF-8 characters, never a partial one (and, with the tokenizer's clean-up
// on, a trailing space waits until the text after it shows whether the
// clean-up drops it). The concatenation of all Push() results and Finish()
// equals tok.Decode(all ids, skip_special).
// `tok` must outlive the decoder.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tok, bool skip_special = true);

  // Text completed by `id` (possibly ""). Bytes that can never form a valid
  // character come out as U+FFFD as soon as that is known.
  std::string Push(int32_t id);

  // Flushes what is pending: an incomplete trailing character becomes U+FFFD.
  // The decoder can be reused afterwards.
  std::string Finish();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;  // bytes of an incomplete trailing character
  std::string held_;     // decoded text the clean-up has not decided yet
};

// tokenizer.json text of the tiny models' byte-level tokenizer, loadable by
// Hugging Face `tokenizers` too: BPE whose ids 0..255 are the 256 bytes (token
// i is byte i in the GPT-2 byte-level alphabet), no merges, a ByteLevel
// pre-tokenizer with use_regex=false (with no merges the regex would not
// change any id, so it is left out), ByteLevel decoder, and special added
// tokens from id 256: <|begin_of_text|>, <|end_of_text|>, <|start_header_id|>,
// <|end_header_id|>, <|eot_id|>, <|im_start|>, <|im_end|>, <|pad|>.
std::string MakeByteLevelTokenizerJson();

// Number of ids in MakeByteLevelTokenizerJson()'s tokenizer (256 + 8).
constexpr int32_t kByteLevelVocabSize = 264;

// tokenizer_config.json text to go with MakeByteLevelTokenizerJson():
// llama3: bos_token "<|begin_of_text|>", eos_token "<|eot_id|>";
// chatml: bos_token null, eos_token "<|im_end|>"; both with pad_token
// "<|pad|>" and chat_template = ChatTemplateJinja(family).
std::string MakeByteLevelTokenizerConfigJson(ChatTemplateFamily family = ChatTemplateFamily::kLlama3);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_TOKENIZER_H_
