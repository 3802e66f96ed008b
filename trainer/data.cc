#include "trainer/data.h"

#include <ATen/ATen.h>

#include "absl/strings/str_split.h"
#include "core/chat_template.h"
#include "core/file_util.h"
#include "core/json_util.h"

namespace skillpack {
namespace {

constexpr int64_t kIgnoreIndex = -100;

// Calls `fn(json, what)` for every non-blank line of a JSONL file.
template <typename Fn>
Status ForEachJsonLine(const std::string& path, Fn fn) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  int64_t line_no = 0, records = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    const std::string what = absl::StrCat(path, ":", line_no);
    ASSIGN_OR_RETURN(Json j, ParseJson(line, what));
    if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": expected a JSON object"));
    RETURN_IF_ERROR(fn(j, what));
    ++records;
  }
  if (records == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no records"));
  return absl::OkStatus();
}

Status WriteJsonl(const std::string& path, const std::vector<Json>& rows) {
  std::string out;
  for (const Json& j : rows) absl::StrAppend(&out, j.dump(), "\n");
  return WriteFileAtomically(path, out);
}

}  // namespace

StatusOr<std::vector<SftRecord>> ReadSftJsonl(const std::string& path, const Tokenizer& tokenizer) {
  std::vector<SftRecord> out;
  RETURN_IF_ERROR(ForEachJsonLine(path, [&](const Json& j, const std::string& what) -> Status {
    if (j.contains("messages")) {
      const Json& msgs = j["messages"];
      if (!msgs.is_array() || msgs.size() < 2) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": field 'messages' must be an array of at least 2 messages"));
      }
      std::vector<ChatMessage> chat;
      for (size_t i = 0; i < msgs.size(); ++i) {
        const std::string mwhat = absl::StrCat(what, ": messages[", i, "]");
        ASSIGN_OR_RETURN(std::string role, GetField<std::string>(msgs[i], "role", mwhat));
        ASSIGN_OR_RETURN(std::string content, GetField<std::string>(msgs[i], "content", mwhat));
        chat.push_back({std::move(role), std::move(content)});
      }
      if (chat.back().role != "assistant") {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": the last message must have role 'assistant', got '", chat.back().role, "'"));
      }
      StatusOr<ChatTemplateFamily> family = DetectChatTemplateFamily(tokenizer.chat_template());
      if (!family.ok()) return Annotate(family.status(), absl::StrCat(what, ": messages"));
      SftRecord r;
      r.response = chat.back().content;
      chat.pop_back();
      StatusOr<std::string> prompt = ApplyChatTemplate(*family, chat, /*add_generation_prompt=*/true);
      if (!prompt.ok()) return Annotate(prompt.status(), what);
      r.prompt = std::move(*prompt);
      r.templated = true;
      out.push_back(std::move(r));
      return absl::OkStatus();
    }
    SftRecord r;
    ASSIGN_OR_RETURN(r.prompt, GetField<std::string>(j, "prompt", what));
    ASSIGN_OR_RETURN(r.response, GetField<std::string>(j, "response", what));
    out.push_back(std::move(r));
    return absl::OkStatus();
  }));
  return out;
}

StatusOr<std::vector<PreferenceRecord>> ReadPreferenceJsonl(const std::string& path) {
  std::vector<PreferenceRecord> out;
  RETURN_IF_ERROR(ForEachJsonLine(path, [&](const Json& j, const std::string& what) -> Status {
    PreferenceRecord r;
    ASSIGN_OR_RETURN(r.prompt, GetField<std::string>(j, "prompt", what));
    ASSIGN_OR_RETURN(r.chosen, GetField<std::string>(j, "chosen", what));
    ASSIGN_OR_RETURN(r.rejected, GetField<std::string>(j, "rejected", what));
    out.push_back(std::move(r));
    return absl::OkStatus();
  }));
  return out;
}

Status WriteSftJsonl(const std::string& path, const std::vector<SftRecord>& records) {
  std::vector<Json> rows;
  for (const SftRecord& r : records) rows.push_back({{"prompt", r.prompt}, {"response", r.response}});
  return WriteJsonl(path, rows);
}

Status WritePreferenceJsonl(const std::string& path, const std::vector<PreferenceRecord>& records) {
  std::vector<Json> rows;
  for (const PreferenceRecord& r : records) {
    rows.push_back({{"prompt", r.prompt}, {"chosen", r.chosen}, {"rejected", r.rejected}});
  }
  return WriteJsonl(path, rows);
}

SequenceEncoder::SequenceEncoder(const Tokenizer& tokenizer, int32_t end_id, int64_t max_len)
    : tokenizer_(tokenizer), end_id_(end_id), max_len_(max_len) {}

std::vector<int32_t> SequenceEncoder::EncodePrompt(absl::string_view prompt, bool templated) const {
  return tokenizer_.Encode(prompt, /*parse_special=*/true, /*add_bos=*/!templated);
}

StatusOr<TokenizedSequence> SequenceEncoder::Encode(absl::string_view prompt, absl::string_view response,
                                                    bool templated) const {
  TokenizedSequence s;
  s.tokens = EncodePrompt(prompt, templated);
  s.prompt_len = static_cast<int64_t>(s.tokens.size());
  if (s.prompt_len == 0 || s.prompt_len >= max_len_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt of ", s.prompt_len, " tokens leaves no room for a response within max_seq_len ", max_len_));
  }
  std::vector<int32_t> r = tokenizer_.Encode(response, /*parse_special=*/false, /*add_bos=*/false);
  s.tokens.insert(s.tokens.end(), r.begin(), r.end());
  s.tokens.push_back(end_id_);
  if (static_cast<int64_t>(s.tokens.size()) > max_len_) s.tokens.resize(static_cast<size_t>(max_len_));
  return s;
}

TokenBatch MakeTokenBatch(const std::vector<TokenizedSequence>& seqs, const std::vector<int64_t>& examples) {
  std::vector<const TokenizedSequence*> batch;
  for (int64_t i : examples) batch.push_back(&seqs[i]);
  return MakeTokenBatch(batch);
}

double ResponseTokens(const std::vector<TokenizedSequence>& seqs, const std::vector<int64_t>& examples) {
  double n = 0;
  for (int64_t i : examples) n += static_cast<double>(seqs[i].num_response_tokens());
  return n;
}

TokenBatch MakeTokenBatch(const std::vector<const TokenizedSequence*>& seqs) {
  const int64_t B = static_cast<int64_t>(seqs.size());
  int64_t T = 0;
  for (const TokenizedSequence* s : seqs) T = std::max<int64_t>(T, s->tokens.size());
  std::vector<int64_t> tok(B * T, 0), mask(B * T, 0), tgt(B * (T - 1), kIgnoreIndex);
  TokenBatch b;
  for (int64_t i = 0; i < B; ++i) {
    const TokenizedSequence& s = *seqs[i];
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    for (int64_t t = 0; t < n; ++t) {
      tok[i * T + t] = s.tokens[t];
      mask[i * T + t] = 1;
      if (t >= 1 && t >= s.prompt_len) {
        tgt[i * (T - 1) + t - 1] = s.tokens[t];
        ++b.num_target_tokens;
      }
    }
  }
  at::TensorOptions lopt = at::TensorOptions().dtype(at::kLong);
  b.tokens = at::tensor(tok, lopt).view({B, T});
  b.attention_mask = at::tensor(mask, lopt).view({B, T});
  b.targets = at::tensor(tgt, lopt).view({B, T - 1});
  return b;
}

}  // namespace skillpack
