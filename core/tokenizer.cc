#include "core/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <queue>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/json_util.h"

namespace skillpack {
namespace {

// GPT-2's default pre-tokenization pattern (ByteLevel with use_regex=true).
constexpr char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Largest token id accepted from a file (guards against absurd allocations).
constexpr int64_t kMaxTokenId = (int64_t{1} << 26) - 1;

const std::string& EmptyString() {
  static const std::string* const kEmpty = new std::string();
  return *kEmpty;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The GPT-2 byte-level alphabet (bytes_to_unicode): printable Latin-1 bytes
// map to themselves, the other 68 bytes to U+0100.. in byte order.
class ByteAlphabet {
 public:
  ByteAlphabet() {
    code_to_byte_.fill(-1);
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); };
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : next++;
      AppendUtf8(cp, &byte_to_str_[b]);
      code_to_byte_[cp] = b;
    }
  }
  const std::string& Symbol(unsigned char b) const { return byte_to_str_[b]; }
  // Byte that code point `cp` stands for, or -1.
  int ByteOf(uint32_t cp) const { return cp < code_to_byte_.size() ? code_to_byte_[cp] : -1; }

 private:
  std::array<std::string, 256> byte_to_str_;
  std::array<int, 256 + 68> code_to_byte_;
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet* const kAlphabet = new ByteAlphabet();
  return *kAlphabet;
}

// Result of examining the UTF-8 sequence starting at some byte.
enum class Utf8Scan { kValid, kInvalid, kIncomplete };

// Examines s[i..]. kValid: *len bytes form one well-formed character.
// kInvalid: the first *len bytes are a maximal ill-formed subpart (to become
// one U+FFFD). kIncomplete: the rest of `s` is a valid but unfinished prefix.
Utf8Scan ScanUtf8(absl::string_view s, size_t i, size_t* len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    *len = 1;
    return Utf8Scan::kValid;
  }
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *len = 1;
    return Utf8Scan::kInvalid;
  }
  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) {
      *len = k;
      return Utf8Scan::kIncomplete;
    }
    const auto b = static_cast<unsigned char>(s[i + k]);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      *len = k;
      return Utf8Scan::kInvalid;
    }
  }
  *len = n;
  return Utf8Scan::kValid;
}

constexpr char kReplacement[] = "\xEF\xBF\xBD";

// Appends the valid UTF-8 text of `bytes` to *out, replacing ill-formed
// subparts with U+FFFD. With `final` false, stops before an incomplete
// trailing character and returns where it starts; with `final` true such a
// tail becomes one U+FFFD. Returns the number of bytes consumed.
size_t AppendLossyUtf8(absl::string_view bytes, bool final, std::string* out) {
  size_t i = 0;
  while (i < bytes.size()) {
    size_t len;
    switch (ScanUtf8(bytes, i, &len)) {
      case Utf8Scan::kValid:
        out->append(bytes.data() + i, len);
        break;
      case Utf8Scan::kInvalid:
        out->append(kReplacement);
        break;
      case Utf8Scan::kIncomplete:
        if (!final) return i;
        out->append(kReplacement);
        break;
    }
    i += len;
  }
  return i;
}

// Appends `text` normalized with utf8proc `options` (one Unicode
// normalization form) to *out. Bytes that are not valid UTF-8 pass through
// unchanged and split the text into runs normalized separately.
void AppendNormalized(absl::string_view text, int options, std::string* out) {
  size_t i = 0;
  while (i < text.size()) {
    size_t run_end = i;
    bool ascii = true;
    while (run_end < text.size()) {
      size_t len;
      if (ScanUtf8(text, run_end, &len) != Utf8Scan::kValid) break;
      ascii = ascii && len == 1;
      run_end += len;
    }
    const absl::string_view run = text.substr(i, run_end - i);
    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t n = ascii ? -1
                                     : utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                                    static_cast<utf8proc_ssize_t>(run.size()), &mapped,
                                                    static_cast<utf8proc_option_t>(options));
    if (n >= 0) {
      out->append(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
    } else {
      out->append(run.data(), run.size());  // ASCII is invariant under every form
    }
    free(mapped);
    i = run_end;
    if (i < text.size()) {  // an ill-formed subpart: kept as is
      size_t len;
      ScanUtf8(text, i, &len);
      out->append(text.data() + i, len);
      i += len;
    }
  }
}

// The clean-up of transformers' `clean_up_tokenization`: drops the space
// before ".", "?", "!", ",", "n't", "'m", "'s", "'ve", "'re", and turns " ' "
// into "'", in one left-to-right pass that gives the same result as
// transformers' pass per pattern except where removing " ' " makes a new
// match ("  ' m", " n ' t"). Appends the result for s[0..k) to *out
// and returns k: with `final` false, k stops before a trailing space whose
// fate depends on text not seen yet; with `final` true, k == s.size().
size_t AppendCleanedUp(absl::string_view s, bool final, std::string* out) {
  static constexpr absl::string_view kBodies[] = {".", "?", "!", ",", "n't", "'m", "'s", "'ve", "'re"};
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != ' ') {
      out->push_back(s[i++]);
      continue;
    }
    const absl::string_view rest = s.substr(i + 1);
    if (absl::StartsWith(rest, "' ")) {
      // " ' " -> "'", unless its second space goes first, dropped before
      // ".", "?", "!" or "," (transformers removes those earlier).
      if (rest.size() < 3 && !final) return i;
      if (rest.size() < 3 || absl::string_view(".?!,").find(rest[2]) == absl::string_view::npos) {
        out->push_back('\'');
        i += 3;
        continue;
      }
    }
    bool drop = false, undecided = false;
    for (absl::string_view body : kBodies) {
      if (absl::StartsWith(rest, body)) drop = true;
      if (rest.size() < body.size() && absl::StartsWith(body, rest)) undecided = true;
    }
    if (rest.size() < 2 && absl::StartsWith("' ", rest)) undecided = true;
    if (drop) {
      ++i;
      continue;
    }
    if (undecided && !final) return i;
    out->push_back(' ');
    ++i;
  }
  return i;
}

bool IsAsciiSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string Pcre2Error(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return absl::StrCat("PCRE2 error ", code);
  return std::string(reinterpret_cast<const char*>(buf));
}

}  // namespace

namespace tokenizer_internal {

// One stage of the pre-tokenizer: splits a piece of text into pieces.
class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  // Appends the non-empty pieces of `piece` to *out.
  virtual void Apply(const std::string& piece, std::vector<std::string>* out) const = 0;
};

}  // namespace tokenizer_internal

namespace {

using tokenizer_internal::PreTokenizerStep;

// A compiled PCRE2 pattern that splits text into matches and the gaps
// between them.
class RegexSplitter {
 public:
  ~RegexSplitter() {
    if (code_ != nullptr) pcre2_code_free(code_);
  }

  // `literal`: the pattern is a plain string, not a regex.
  static StatusOr<std::unique_ptr<RegexSplitter>> Create(absl::string_view pattern, bool literal,
                                                         absl::string_view what) {
    uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    options |= literal ? PCRE2_LITERAL : PCRE2_UCP;
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error,
                                     &error_offset, nullptr);
    if (code == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": bad regex /", pattern, "/ at offset ", error_offset, ": ", Pcre2Error(error)));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; failure is fine
    auto splitter = std::unique_ptr<RegexSplitter>(new RegexSplitter());
    splitter->code_ = code;
    return splitter;
  }

  // Appends the pieces of `text` to *out, in order: (if `keep_gaps`) each
  // non-empty stretch between matches, and (if `keep_matches`) each non-empty
  // match.
  void Split(const std::string& text, bool keep_matches, bool keep_gaps, std::vector<std::string>* out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const size_t n = text.size();
    size_t last = 0, offset = 0;
    while (offset < n) {
      int rc = pcre2_match(code_, subject, n, offset, 0, md, nullptr);
      if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
        // E.g. the JIT stack ran out on a huge input: retry interpreted.
        rc = pcre2_match(code_, subject, n, offset, PCRE2_NO_JIT, md, nullptr);
      }
      if (rc < 0) break;  // no more matches (or an error: the rest is one gap)
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t start = ov[0], end = ov[1];
      if (end <= start) {  // empty match: step over one character
        size_t len = 1;
        if (start < n) ScanUtf8(text, start, &len);
        offset = start + std::max<size_t>(len, 1);
        continue;
      }
      if (keep_gaps && start > last) out->emplace_back(text, last, start - last);
      if (keep_matches) out->emplace_back(text, start, end - start);
      last = offset = end;
    }
    if (keep_gaps && last < n) out->emplace_back(text, last, n - last);
    pcre2_match_data_free(md);
  }

 private:
  RegexSplitter() = default;
  pcre2_code* code_ = nullptr;
};

// Split pre-tokenizer: behavior Isolated (matches and gaps are pieces) or
// Removed (the delimiters are dropped). The delimiters are the matches, or
// with `invert` the gaps between them (Removed + invert keeps only the
// matches, each its own piece: GPT-4o's tokenizer.json).
class SplitStep : public PreTokenizerStep {
 public:
  SplitStep(std::unique_ptr<RegexSplitter> splitter, bool removed, bool invert)
      : splitter_(std::move(splitter)), removed_(removed), invert_(invert) {}
  void Apply(const std::string& piece, std::vector<std::string>* out) const override {
    const bool keep_matches = !removed_ || invert_;
    const bool keep_gaps = !removed_ || !invert_;
    splitter_->Split(piece, keep_matches, keep_gaps, out);
  }

 private:
  std::unique_ptr<RegexSplitter> splitter_;
  bool removed_;
  bool invert_;
};

// ByteLevel pre-tokenizer: optionally prefixes a space, optionally splits with
// the GPT-2 pattern. (The byte -> alphabet mapping happens in the model.)
class ByteLevelStep : public PreTokenizerStep {
 public:
  ByteLevelStep(bool add_prefix_space, std::unique_ptr<RegexSplitter> splitter)
      : add_prefix_space_(add_prefix_space), splitter_(std::move(splitter)) {}
  void Apply(const std::string& piece, std::vector<std::string>* out) const override {
    if (piece.empty()) return;
    std::string text = (add_prefix_space_ && piece[0] != ' ') ? " " + piece : piece;
    if (splitter_ == nullptr) {
      out->push_back(std::move(text));
    } else {
      splitter_->Split(text, /*keep_matches=*/true, /*keep_gaps=*/true, out);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<RegexSplitter> splitter_;  // null when use_regex is false
};

std::string TypeOf(const Json& j) {
  if (j.is_object()) {
    auto it = j.find("type");
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return "";
}

}  // namespace

// Builds a Tokenizer from parsed JSON; the friend that fills its members.
class TokenizerLoader {
 public:
  TokenizerLoader(Tokenizer* tok, std::string what) : tok_(tok), what_(std::move(what)) {}

  Status Load(const Json& root) {
    if (!root.is_object()) return Error("expected a JSON object at top level");
    RETURN_IF_ERROR(LoadNormalizer(root.contains("normalizer") ? root["normalizer"] : Json()));
    auto model = root.find("model");
    if (model == root.end() || model->is_null()) return Error("missing 'model'");
    RETURN_IF_ERROR(LoadModel(*model));
    RETURN_IF_ERROR(LoadAddedTokens(root.contains("added_tokens") ? root["added_tokens"] : Json()));
    RETURN_IF_ERROR(LoadPreTokenizer(root.contains("pre_tokenizer") ? root["pre_tokenizer"] : Json()));
    return LoadDecoder(root.contains("decoder") ? root["decoder"] : Json());
  }

  Status LoadConfig(const Json& config) {
    if (!config.is_object()) return Error("tokenizer_config.json: expected a JSON object");
    ASSIGN_OR_RETURN(std::optional<std::string> bos, SpecialTokenString(config, "bos_token"));
    ASSIGN_OR_RETURN(std::optional<std::string> eos, SpecialTokenString(config, "eos_token"));
    if (bos) {
      tok_->bos_id_ = tok_->TokenToId(*bos);
      if (!tok_->bos_id_) return Error(absl::StrCat("tokenizer_config bos_token '", *bos, "' is not a token"));
    }
    std::vector<int32_t>& eos_ids = tok_->eos_ids_;
    eos_ids.clear();
    if (eos) {
      std::optional<int32_t> id = tok_->TokenToId(*eos);
      if (!id) return Error(absl::StrCat("tokenizer_config eos_token '", *eos, "' is not a token"));
      eos_ids.push_back(*id);
    }
    AddWellKnownEos();
    ASSIGN_OR_RETURN(tok_->clean_up_tokenization_spaces_,
                     GetFieldOr<bool>(config, "clean_up_tokenization_spaces", false, what_ + " tokenizer_config"));
    auto tmpl = config.find("chat_template");
    if (tmpl != config.end() && !tmpl->is_null()) {
      if (tmpl->is_string()) {
        tok_->chat_template_ = tmpl->get<std::string>();
      } else if (tmpl->is_array()) {
        for (const Json& entry : *tmpl) {
          if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
              entry["template"].is_string()) {
            tok_->chat_template_ = entry["template"].get<std::string>();
          }
        }
      } else {
        return Error("tokenizer_config chat_template must be a string or a list of {name, template}");
      }
    }
    return absl::OkStatus();
  }

  void AddWellKnownEos() {
    std::vector<int32_t>& eos_ids = tok_->eos_ids_;
    for (const char* name : {"<|eot_id|>", "<|im_end|>", "<|end_of_text|>"}) {
      std::optional<int32_t> id = tok_->TokenToId(name);
      if (id && std::find(eos_ids.begin(), eos_ids.end(), *id) == eos_ids.end()) eos_ids.push_back(*id);
    }
  }

 private:
  Status Error(absl::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(what_, ": ", message));
  }

  StatusOr<std::optional<std::string>> SpecialTokenString(const Json& config, const char* key) const {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) return std::optional<std::string>();
    if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      return std::optional<std::string>((*it)["content"].get<std::string>());
    }
    return Error(absl::StrCat("tokenizer_config ", key, " must be a string or {\"content\": ...}"));
  }

  Status LoadNormalizer(const Json& j) {
    if (j.is_null()) return absl::OkStatus();
    const std::string type = TypeOf(j);
    if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
      int options = UTF8PROC_STABLE;
      options |= type[type.size() - 1] == 'C' ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
      if (type.size() == 4) options |= UTF8PROC_COMPAT;  // NFKC, NFKD
      tok_->normalizers_.push_back(options);
      return absl::OkStatus();
    }
    if (type == "Sequence" && j.contains("normalizers") && j["normalizers"].is_array()) {
      for (const Json& n : j["normalizers"]) RETURN_IF_ERROR(LoadNormalizer(n));
      return absl::OkStatus();
    }
    return Error(absl::StrCat("unsupported normalizer type '", type.empty() ? j.dump() : type, "'"));
  }

  StatusOr<int32_t> TokenId(const Json& v, absl::string_view context) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokenId) {
      return Error(absl::StrCat(context, ": id must be an integer in [0, ", kMaxTokenId, "], got ", v.dump()));
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }

  void GrowIds(int32_t id) {
    if (static_cast<size_t>(id) >= tok_->id_bytes_.size()) {
      tok_->id_bytes_.resize(static_cast<size_t>(id) + 1);
      tok_->special_.resize(static_cast<size_t>(id) + 1, false);
    }
  }

  // Raw bytes of a vocabulary token spelled in the byte-level alphabet; the
  // token's own bytes when some character is outside the alphabet (as the
  // Hugging Face ByteLevel decoder does).
  static std::string TokenStringToBytes(const std::string& token) {
    std::string bytes;
    size_t i = 0;
    while (i < token.size()) {
      size_t len;
      if (ScanUtf8(token, i, &len) != Utf8Scan::kValid) return token;
      const auto* p = reinterpret_cast<const unsigned char*>(token.data() + i);
      uint32_t cp = len == 1 ? p[0] : len == 2 ? ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu) : 0x110000;
      const int b = Alphabet().ByteOf(cp);
      if (b < 0) return token;
      bytes.push_back(static_cast<char>(b));
      i += len;
    }
    return bytes;
  }

  Status LoadModel(const Json& model) {
    const std::string type = TypeOf(model);
    if (type != "BPE") {
      return Error(
          absl::StrCat("unsupported model type '", type.empty() ? "(none)" : type, "' (only BPE is supported)"));
    }
    auto field_set = [&](const char* key) {
      auto it = model.find(key);
      return it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()) &&
             !(it->is_boolean() && !it->get<bool>());
    };
    for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"}) {
      if (field_set(key)) return Error(absl::StrCat("unsupported BPE option '", key, "'"));
    }
    ASSIGN_OR_RETURN(tok_->ignore_merges_, GetFieldOr<bool>(model, "ignore_merges", false, what_ + " model"));

    auto vocab = model.find("vocab");
    if (vocab == model.end() || !vocab->is_object()) return Error("model.vocab must be an object");
    tok_->vocab_.reserve(vocab->size());
    for (auto it = vocab->begin(); it != vocab->end(); ++it) {
      ASSIGN_OR_RETURN(int32_t id, TokenId(it.value(), absl::StrCat("model.vocab '", it.key(), "'")));
      tok_->vocab_[it.key()] = id;
      GrowIds(id);
      tok_->id_bytes_[id] = TokenStringToBytes(it.key());
    }
    for (int b = 0; b < 256; ++b) {
      auto it = tok_->vocab_.find(Alphabet().Symbol(static_cast<unsigned char>(b)));
      tok_->byte_ids_[b] = it == tok_->vocab_.end() ? -1 : it->second;
    }

    auto unk = model.find("unk_token");
    if (unk != model.end() && !unk->is_null()) {
      if (!unk->is_string()) return Error("model.unk_token must be a string");
      auto it = tok_->vocab_.find(unk->get<std::string>());
      if (it == tok_->vocab_.end())
        return Error(absl::StrCat("model.unk_token '", unk->get<std::string>(), "' is not in the vocab"));
      tok_->unk_id_ = it->second;
    }

    auto merges = model.find("merges");
    if (merges == model.end() || merges->is_null()) return absl::OkStatus();
    if (!merges->is_array()) return Error("model.merges must be an array");
    tok_->merges_.reserve(merges->size());
    int32_t rank = 0;
    for (const Json& m : *merges) {
      std::string left, right;
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          return Error(absl::StrCat("merge ", rank, " '", s, "' is not two tokens separated by one space"));
        }
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        left = m[0].get<std::string>();
        right = m[1].get<std::string>();
      } else {
        return Error(absl::StrCat("merge ", rank, " must be \"a b\" or [\"a\", \"b\"], got ", m.dump()));
      }
      auto find = [&](const std::string& token) -> StatusOr<int32_t> {
        auto it = tok_->vocab_.find(token);
        if (it == tok_->vocab_.end()) {
          return Error(absl::StrCat("merge ", rank, " ('", left, "', '", right, "') uses token '", token,
                                    "' which is not in the vocab"));
        }
        return it->second;
      };
      ASSIGN_OR_RETURN(int32_t left_id, find(left));
      ASSIGN_OR_RETURN(int32_t right_id, find(right));
      ASSIGN_OR_RETURN(int32_t new_id, find(left + right));
      const uint64_t key = (static_cast<uint64_t>(left_id) << 32) | static_cast<uint32_t>(right_id);
      tok_->merges_.emplace(key, Tokenizer::Merge{rank, new_id});  // keeps the first (best) rank
      ++rank;
    }
    return absl::OkStatus();
  }

  Status LoadAddedTokens(const Json& j) {
    if (j.is_null()) return absl::OkStatus();
    if (!j.is_array()) return Error("added_tokens must be an array");
    for (const Json& t : j) {
      const std::string where = absl::StrCat(what_, " added_tokens");
      if (!t.is_object()) return Error("added_tokens entries must be objects");
      Tokenizer::AddedToken added;
      ASSIGN_OR_RETURN(added.content, GetField<std::string>(t, "content", where));
      if (added.content.empty()) return Error("added token with empty content");
      if (!t.contains("id")) return Error(absl::StrCat("added token '", added.content, "' has no id"));
      ASSIGN_OR_RETURN(added.id, TokenId(t["id"], absl::StrCat("added token '", added.content, "'")));
      ASSIGN_OR_RETURN(added.special, GetFieldOr<bool>(t, "special", false, where));
      ASSIGN_OR_RETURN(added.lstrip, GetFieldOr<bool>(t, "lstrip", false, where));
      ASSIGN_OR_RETURN(added.rstrip, GetFieldOr<bool>(t, "rstrip", false, where));
      GrowIds(added.id);
      tok_->id_bytes_[added.id] = added.content;
      tok_->special_[added.id] = added.special;
      tok_->added_by_content_[added.content] = added.id;
      tok_->added_tokens_.push_back(std::move(added));
    }
    for (size_t i = 0; i < tok_->added_tokens_.size(); ++i) {
      const auto first = static_cast<unsigned char>(tok_->added_tokens_[i].content[0]);
      tok_->added_by_first_byte_[first].push_back(static_cast<int32_t>(i));
    }
    for (auto& bucket : tok_->added_by_first_byte_) {
      std::stable_sort(bucket.begin(), bucket.end(), [&](int32_t a, int32_t b) {
        return tok_->added_tokens_[a].content.size() > tok_->added_tokens_[b].content.size();
      });
    }
    return absl::OkStatus();
  }

  // Adds the steps of pre-tokenizer `j` to the pipeline; *saw_byte_level is
  // set when a ByteLevel step is among them.
  Status AddPreTokenizer(const Json& j, bool* saw_byte_level) {
    const std::string type = TypeOf(j);
    if (type == "Sequence") {
      if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
        return Error("pre_tokenizer Sequence needs a 'pretokenizers' array");
      }
      for (const Json& p : j["pretokenizers"]) RETURN_IF_ERROR(AddPreTokenizer(p, saw_byte_level));
      return absl::OkStatus();
    }
    if (type == "ByteLevel") {
      *saw_byte_level = true;
      const std::string where = absl::StrCat(what_, " ByteLevel pre_tokenizer");
      ASSIGN_OR_RETURN(bool add_prefix_space, GetFieldOr<bool>(j, "add_prefix_space", false, where));
      ASSIGN_OR_RETURN(bool use_regex, GetFieldOr<bool>(j, "use_regex", true, where));
      std::unique_ptr<RegexSplitter> splitter;
      if (use_regex) {
        ASSIGN_OR_RETURN(splitter, RegexSplitter::Create(kGpt2Pattern, false, where));
      }
      tok_->pre_tokenizer_.push_back(std::make_unique<ByteLevelStep>(add_prefix_space, std::move(splitter)));
      return absl::OkStatus();
    }
    if (type == "Split") {
      const std::string where = absl::StrCat(what_, " Split pre_tokenizer");
      ASSIGN_OR_RETURN(bool invert, GetFieldOr<bool>(j, "invert", false, where));
      ASSIGN_OR_RETURN(std::string behavior, GetFieldOr<std::string>(j, "behavior", "Isolated", where));
      if (behavior != "Isolated" && behavior != "Removed") {
        return Error(
            absl::StrCat("Split pre_tokenizer behavior '", behavior, "' is not supported (Isolated, Removed)"));
      }
      auto pattern = j.find("pattern");
      if (pattern == j.end() || !pattern->is_object()) return Error("Split pre_tokenizer needs a 'pattern' object");
      std::unique_ptr<RegexSplitter> splitter;
      if (pattern->contains("Regex") && (*pattern)["Regex"].is_string()) {
        ASSIGN_OR_RETURN(splitter, RegexSplitter::Create((*pattern)["Regex"].get<std::string>(), false, where));
      } else if (pattern->contains("String") && (*pattern)["String"].is_string()) {
        const std::string literal = (*pattern)["String"].get<std::string>();
        if (literal.empty()) return Error("Split pre_tokenizer String pattern is empty");
        ASSIGN_OR_RETURN(splitter, RegexSplitter::Create(literal, true, where));
      } else {
        return Error(absl::StrCat("Split pre_tokenizer pattern must be {\"Regex\": ...} or {\"String\": ...}, got ",
                                  pattern->dump()));
      }
      tok_->pre_tokenizer_.push_back(std::make_unique<SplitStep>(std::move(splitter), behavior == "Removed", invert));
      return absl::OkStatus();
    }
    return Error(absl::StrCat("unsupported pre_tokenizer type '", type.empty() ? j.dump() : type, "'"));
  }

  Status LoadPreTokenizer(const Json& j) {
    if (j.is_null()) return Error("missing pre_tokenizer (a ByteLevel pre_tokenizer is required)");
    bool saw_byte_level = false;
    RETURN_IF_ERROR(AddPreTokenizer(j, &saw_byte_level));
    if (!saw_byte_level) {
      return Error("pre_tokenizer has no ByteLevel step; only byte-level BPE tokenizers are supported");
    }
    return absl::OkStatus();
  }

  Status LoadDecoder(const Json& j) {
    if (j.is_null()) return absl::OkStatus();
    const std::string type = TypeOf(j);
    if (type == "ByteLevel") return absl::OkStatus();
    return Error(
        absl::StrCat("unsupported decoder type '", type.empty() ? j.dump() : type, "' (only ByteLevel is supported)"));
  }

  Tokenizer* tok_;
  std::string what_;
};

Tokenizer::Tokenizer() { byte_ids_.fill(-1); }
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(absl::string_view tokenizer_json, absl::string_view what,
                                                         absl::string_view tokenizer_config_json) {
  ASSIGN_OR_RETURN(Json root, ParseJson(tokenizer_json, what));
  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  TokenizerLoader loader(tok.get(), std::string(what));
  RETURN_IF_ERROR(loader.Load(root));
  if (!tokenizer_config_json.empty()) {
    ASSIGN_OR_RETURN(Json config, ParseJson(tokenizer_config_json, absl::StrCat(what, " tokenizer_config")));
    RETURN_IF_ERROR(loader.LoadConfig(config));
  } else {
    loader.AddWellKnownEos();
  }
  return tok;
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromModelDir(const std::string& dir) {
  const std::string path = JoinPath(dir, "tokenizer.json");
  ASSIGN_OR_RETURN(std::string json, ReadFileToString(path));
  std::string config;
  const std::string config_path = JoinPath(dir, "tokenizer_config.json");
  if (PathExists(config_path)) {
    ASSIGN_OR_RETURN(config, ReadFileToString(config_path));
  }
  auto result = FromJson(json, path, config);
  if (!result.ok() && !config.empty()) return Annotate(result.status(), absl::StrCat("with ", config_path));
  return result;
}

std::string Tokenizer::Normalize(absl::string_view text) const {
  std::string normalized(text);
  for (int options : normalizers_) {
    std::string next;
    next.reserve(normalized.size());
    AppendNormalized(normalized, options, &next);
    normalized.swap(next);
  }
  return normalized;
}

std::vector<std::string> Tokenizer::PreTokenize(absl::string_view text) const {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(Normalize(text));
  std::vector<std::string> next;
  for (const auto& step : pre_tokenizer_) {
    next.clear();
    for (const std::string& piece : pieces) step->Apply(piece, &next);
    pieces.swap(next);
  }
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(), [](const std::string& p) { return p.empty(); }),
               pieces.end());
  return pieces;
}

void Tokenizer::EncodePiece(absl::string_view piece, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    std::string mapped;
    for (char c : piece) mapped += Alphabet().Symbol(static_cast<unsigned char>(c));
    auto it = vocab_.find(mapped);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // Symbols as a doubly linked list over a vector; merged-away ones are dead.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> syms;
  syms.reserve(piece.size());
  for (char c : piece) {
    int32_t id = byte_ids_[static_cast<unsigned char>(c)];
    if (id < 0) {
      if (!unk_id_) continue;  // no token for this byte and no unk: dropped, as Hugging Face does
      id = *unk_id_;
    }
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{id, n - 1, n + 1, true});
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Candidate {
    int32_t rank;
    int32_t pos;  // index of the left symbol
    int32_t left_id;
    int32_t right_id;
    int32_t new_id;
  };
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> queue(worse);
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = syms[left].next;
    if (right < 0) return;
    const uint64_t key = (static_cast<uint64_t>(syms[left].id) << 32) | static_cast<uint32_t>(syms[right].id);
    auto it = merges_.find(key);
    if (it != merges_.end()) {
      queue.push(Candidate{it->second.rank, left, syms[left].id, syms[right].id, it->second.new_id});
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = syms[c.pos];
    if (!left.alive || left.id != c.left_id || left.next < 0) continue;
    Symbol& right = syms[left.next];
    if (right.id != c.right_id) continue;  // stale: a neighbour merged since
    left.id = c.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = c.pos;
    consider(left.prev);
    consider(c.pos);
  }
  for (const Symbol& s : syms) {
    if (s.alive) out->push_back(s.id);
  }
}

void Tokenizer::EncodeOrdinary(absl::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return;
  for (const std::string& piece : PreTokenize(text)) EncodePiece(piece, out);
}

std::vector<int32_t> Tokenizer::Encode(absl::string_view text, bool parse_special, bool add_bos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos && bos_id_) ids.push_back(*bos_id_);
  size_t start = 0;  // start of the text not yet encoded
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* match = nullptr;
    for (int32_t index : added_by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = added_tokens_[index];
      if (t.special && !parse_special) continue;
      if (text.substr(i, t.content.size()) == t.content) {
        match = &t;  // buckets are longest first
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    size_t before_end = i;
    if (match->lstrip) {
      while (before_end > start && IsAsciiSpace(text[before_end - 1])) --before_end;
    }
    EncodeOrdinary(text.substr(start, before_end - start), &ids);
    ids.push_back(match->id);
    i += match->content.size();
    if (match->rstrip) {
      while (i < text.size() && IsAsciiSpace(text[i])) ++i;
    }
    start = i;
  }
  EncodeOrdinary(text.substr(start), &ids);
  return ids;
}

const std::string& Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return EmptyString();
  return id_bytes_[id];
}

bool Tokenizer::IsSpecial(int32_t id) const { return id >= 0 && id < vocab_size() && special_[id]; }

std::optional<int32_t> Tokenizer::TokenToId(absl::string_view token_content) const {
  auto added = added_by_content_.find(token_content);
  if (added != added_by_content_.end()) return added->second;
  auto it = vocab_.find(token_content);
  if (it != vocab_.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (skip_special && IsSpecial(id)) continue;
    bytes += TokenBytes(id);
  }
  std::string text;
  text.reserve(bytes.size());
  AppendLossyUtf8(bytes, /*final=*/true, &text);
  if (!clean_up_tokenization_spaces_) return text;
  std::string cleaned;
  cleaned.reserve(text.size());
  AppendCleanedUp(text, /*final=*/true, &cleaned);
  return cleaned;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

std::string IncrementalDecoder::Push(int32_t id) {
  if (skip_special_ && tok_.IsSpecial(id)) return "";
  pending_ += tok_.TokenBytes(id);
  std::string text;
  const size_t consumed = AppendLossyUtf8(pending_, /*final=*/false, &text);
  pending_.erase(0, consumed);
  if (!tok_.clean_up_tokenization_spaces()) return text;
  held_ += text;
  std::string cleaned;
  const size_t done = AppendCleanedUp(held_, /*final=*/false, &cleaned);
  held_.erase(0, done);
  return cleaned;
}

std::string IncrementalDecoder::Finish() {
  std::string text;
  AppendLossyUtf8(pending_, /*final=*/true, &text);
  pending_.clear();
  if (!tok_.clean_up_tokenization_spaces()) return text;
  held_ += text;
  std::string cleaned;
  AppendCleanedUp(held_, /*final=*/true, &cleaned);
  held_.clear();
  return cleaned;
}

std::string MakeByteLevelTokenizerJson() {
  using OJson = nlohmann::ordered_json;
  static const char* const kSpecials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                          "<|end_header_id|>", "<|eot_id|>",      "<|im_start|>",
                                          "<|im_end|>",        "<|pad|>"};
  static_assert(256 + sizeof(kSpecials) / sizeof(kSpecials[0]) == kByteLevelVocabSize, "vocab size");
  OJson added = OJson::array();
  int32_t id = 256;
  for (const char* content : kSpecials) {
    added.push_back(OJson{{"id", id++},
                          {"content", content},
                          {"single_word", false},
                          {"lstrip", false},
                          {"rstrip", false},
                          {"normalized", false},
                          {"special", true}});
  }
  OJson vocab = OJson::object();
  for (int b = 0; b < 256; ++b) vocab[Alphabet().Symbol(static_cast<unsigned char>(b))] = b;
  OJson byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}};
  OJson pre_tokenizer = byte_level;
  pre_tokenizer["use_regex"] = false;
  OJson post_processor = byte_level;
  post_processor["trim_offsets"] = false;
  post_processor["use_regex"] = false;
  OJson decoder = byte_level;
  decoder["use_regex"] = false;
  OJson root = OJson::object();
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = std::move(added);
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = std::move(pre_tokenizer);
  root["post_processor"] = std::move(post_processor);
  root["decoder"] = std::move(decoder);
  root["model"] = OJson{{"type", "BPE"},
                        {"dropout", nullptr},
                        {"unk_token", nullptr},
                        {"continuing_subword_prefix", nullptr},
                        {"end_of_word_suffix", nullptr},
                        {"fuse_unk", false},
                        {"byte_fallback", false},
                        {"vocab", std::move(vocab)},
                        {"merges", OJson::array()}};
  return root.dump(2);
}

std::string MakeByteLevelTokenizerConfigJson(ChatTemplateFamily family) {
  using OJson = nlohmann::ordered_json;
  OJson config = OJson::object();
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  config["clean_up_tokenization_spaces"] = false;
  config["model_max_length"] = 1 << 20;
  if (family == ChatTemplateFamily::kLlama3) {
    config["bos_token"] = "<|begin_of_text|>";
    config["eos_token"] = "<|eot_id|>";
  } else {
    config["bos_token"] = nullptr;
    config["eos_token"] = "<|im_end|>";
  }
  config["pad_token"] = "<|pad|>";
  config["chat_template"] = ChatTemplateJinja(family);
  return config.dump(2);
}

}  // namespace skillpack
