#include "core/chat_template.h"

#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace skillpack {
namespace {

// True for the code points Python's str.isspace() accepts (what Jinja's
// `trim` filter strips).
bool IsPythonSpace(uint32_t cp) {
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return true;
  if (cp < 0x80) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes the (well-formed) UTF-8 character starting at s[i]; stores its byte
// length in *len. Malformed bytes decode as a 1-byte non-space value.
uint32_t DecodeAt(absl::string_view s, size_t i, size_t* len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t n = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return 0xFFFD;
  }
  uint32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  *len = n;
  return cp;
}

// Python-style str.strip() on UTF-8 text.
absl::string_view TrimPythonSpace(absl::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t len;
    if (!IsPythonSpace(DecodeAt(s, begin, &len))) break;
    begin += len;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;  // find the start of the last character
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && end - start < 4) {
      --start;
    }
    size_t len;
    const uint32_t cp = DecodeAt(s, start, &len);
    if (start + len != end || !IsPythonSpace(cp)) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

// Python's s.lstrip('\n') / s.rstrip('\n').
absl::string_view LstripNewlines(absl::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  return s;
}
absl::string_view RstripNewlines(absl::string_view s) {
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

// Qwen 3's template (see chat_template.h), without tools.
std::string RenderQwen3(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& options) {
  std::string out;
  const size_t n = messages.size();
  if (messages[0].role == "system") absl::StrAppend(&out, "<|im_start|>system\n", messages[0].content, "<|im_end|>\n");
  // The last user turn that is a real query (not a tool's response).
  size_t last_query = n - 1;
  for (size_t k = n; k-- > 0;) {
    const std::string& content = messages[k].content;
    const bool tool_response =
        absl::StartsWith(content, "<tool_response>") && absl::EndsWith(content, "</tool_response>");
    if (messages[k].role == "user" && !tool_response) {
      last_query = k;
      break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      continue;
    }
    if (m.role != "assistant") continue;  // the leading system message, written above
    absl::string_view content = m.content;
    absl::string_view reasoning = m.reasoning_content;
    if (reasoning.empty()) {
      const size_t first_close = content.find("</think>");
      if (first_close != absl::string_view::npos) {
        absl::string_view before = RstripNewlines(content.substr(0, first_close));
        const size_t open = before.rfind("<think>");
        if (open != absl::string_view::npos) before.remove_prefix(open + 7);
        reasoning = LstripNewlines(before);
        content = LstripNewlines(content.substr(content.rfind("</think>") + 8));
      }
    }
    const bool last = i + 1 == n;
    if (i > last_query && (last || !reasoning.empty())) {
      absl::StrAppend(&out, "<|im_start|>assistant\n<think>\n", LstripNewlines(RstripNewlines(reasoning)),
                      "\n</think>\n\n", LstripNewlines(content));
    } else {
      absl::StrAppend(&out, "<|im_start|>assistant\n", content);
    }
    out += "<|im_end|>\n";
  }
  if (options.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (!options.enable_thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

Status CheckRole(const ChatMessage& m, size_t index) {
  if (m.role == "system" || m.role == "user" || m.role == "assistant") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("chat message ", index, " has unknown role '", m.role, "' (expected system, user or assistant)"));
}

}  // namespace

StatusOr<ChatTemplateFamily> ChatTemplateFamilyFromName(absl::string_view name) {
  if (name == "llama3") return ChatTemplateFamily::kLlama3;
  if (name == "chatml") return ChatTemplateFamily::kChatml;
  if (name == "qwen3") return ChatTemplateFamily::kQwen3;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template family '", name, "' (expected llama3, chatml or qwen3)"));
}

const char* ChatTemplateFamilyName(ChatTemplateFamily family) {
  switch (family) {
    case ChatTemplateFamily::kLlama3:
      return "llama3";
    case ChatTemplateFamily::kChatml:
      return "chatml";
    case ChatTemplateFamily::kQwen3:
      return "qwen3";
  }
  return "unknown";
}

StatusOr<ChatTemplateFamily> DetectChatTemplateFamily(absl::string_view jinja) {
  if (jinja.empty()) return absl::NotFoundError("no chat template (tokenizer_config.json has no chat_template)");
  if (jinja.find("<|start_header_id|>") != absl::string_view::npos) return ChatTemplateFamily::kLlama3;
  if (jinja.find("<|im_start|>") != absl::string_view::npos) {
    return jinja.find("<think>") != absl::string_view::npos ? ChatTemplateFamily::kQwen3 : ChatTemplateFamily::kChatml;
  }
  return absl::InvalidArgumentError(
      "unsupported chat template: it mentions neither <|start_header_id|> (llama3) nor <|im_start|> "
      "(chatml); name the family explicitly");
}

StatusOr<std::string> ApplyChatTemplate(ChatTemplateFamily family, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) {
  ChatTemplateOptions options;
  options.add_generation_prompt = add_generation_prompt;
  return ApplyChatTemplate(family, messages, options);
}

StatusOr<std::string> ApplyChatTemplate(ChatTemplateFamily family, const std::vector<ChatMessage>& messages,
                                        const ChatTemplateOptions& options) {
  const bool add_generation_prompt = options.add_generation_prompt;
  if (messages.empty()) return absl::InvalidArgumentError("chat template: no messages to render");
  for (size_t i = 0; i < messages.size(); ++i) RETURN_IF_ERROR(CheckRole(messages[i], i));
  std::string out;
  switch (family) {
    case ChatTemplateFamily::kLlama3:
      out = "<|begin_of_text|>";
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n", TrimPythonSpace(m.content),
                        "<|eot_id|>");
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case ChatTemplateFamily::kChatml:
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case ChatTemplateFamily::kQwen3:
      return RenderQwen3(messages, options);
  }
  return absl::InvalidArgumentError("chat template: unknown family");
}

std::string ChatTemplateJinja(ChatTemplateFamily family) {
  // '\n' inside the Jinja string literals is a Jinja escape (backslash + n in
  // the source), as in the real templates.
  switch (family) {
    case ChatTemplateFamily::kLlama3:
      return R"({% for message in messages %})"
             R"({% if message['role'] not in ['system', 'user', 'assistant'] %})"
             R"({{ raise_exception('unknown role: ' + message['role']) }}{% endif %})"
             R"({% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + )"
             R"(message['content'] | trim + '<|eot_id|>' %})"
             R"({% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %})"
             R"({{ content }}{% endfor %})"
             R"({% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})";
    case ChatTemplateFamily::kChatml:
      return R"({% for message in messages %})"
             R"({% if message['role'] not in ['system', 'user', 'assistant'] %})"
             R"({{ raise_exception('unknown role: ' + message['role']) }}{% endif %})"
             R"({{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }})"
             R"({% endfor %})"
             R"({% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})";
    case ChatTemplateFamily::kQwen3:
      // Qwen 3's template with its tools branch and tool role left out.
      return R"({%- if messages[0].role == 'system' %})"
             R"({{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}{%- endif %})"
             R"({%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %})"
             R"({%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %})"
             R"({%- if ns.multi_step_tool and message.role == "user" and )"
             R"(not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %})"
             R"({%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %})"
             R"({%- for message in messages %})"
             R"({%- if message.role not in ['system', 'user', 'assistant'] %})"
             R"({{ raise_exception('unknown role: ' + message.role) }}{%- endif %})"
             R"({%- if (message.role == "user") or (message.role == "system" and not loop.first) %})"
             R"({{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }})"
             R"({%- elif message.role == "assistant" %}{%- set content = message.content %})"
             R"({%- set reasoning_content = '' %})"
             R"({%- if message.reasoning_content is defined and message.reasoning_content is not none %})"
             R"({%- set reasoning_content = message.reasoning_content %}{%- else %})"
             R"({%- if '</think>' in message.content %})"
             R"({%- set content = message.content.split('</think>')[-1].lstrip('\n') %})"
             R"({%- set reasoning_content = )"
             R"(message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %})"
             R"({%- endif %}{%- endif %})"
             R"({%- if loop.index0 > ns.last_query_index %})"
             R"({%- if loop.last or (not loop.last and reasoning_content) %})"
             R"({{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + )"
             R"('\n</think>\n\n' + content.lstrip('\n') }})"
             R"({%- else %}{{- '<|im_start|>' + message.role + '\n' + content }}{%- endif %})"
             R"({%- else %}{{- '<|im_start|>' + message.role + '\n' + content }}{%- endif %})"
             R"({{- '<|im_end|>\n' }}{%- endif %}{%- endfor %})"
             R"({%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }})"
             R"({%- if enable_thinking is defined and enable_thinking is false %})"
             R"({{- '<think>\n\n</think>\n\n' }}{%- endif %}{%- endif %})";
  }
  return "";
}

}  // namespace skillpack
