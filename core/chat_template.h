// Chat templates: turns a list of chat messages into the prompt text a
// Llama-3-style or ChatML-style (Qwen2) instruct model was trained on. The
// templates are rendered natively (no Jinja engine); the output is byte-for-byte
// what the Hugging Face Jinja templates of those families render. Also holds the
// Jinja source we write into generated tokenizer_config.json files and the
// detection of a family from such a Jinja string.
#ifndef SKILLPACK_CORE_CHAT_TEMPLATE_H_
#define SKILLPACK_CORE_CHAT_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"

namespace skillpack {

// One turn of a conversation. `role` is one of "system", "user", "assistant".
// `reasoning_content`: an assistant turn's thinking, used by the qwen3 family
// only (when empty, qwen3 takes it from a "<think>...</think>" prefix of
// `content`).
struct ChatMessage {
  std::string role;
  std::string content;
  std::string reasoning_content = "";
};

// Rendering options beyond the messages.
struct ChatTemplateOptions {
  // Append the opening of the assistant's turn.
  bool add_generation_prompt = true;
  // qwen3 only: false appends an empty "<think>\n\n</think>\n\n" block after
  // the generation prompt, so the model answers without thinking (Qwen 3's
  // `enable_thinking=False`). Ignored by the other families.
  bool enable_thinking = true;
};

enum class ChatTemplateFamily {
  // Llama-3 instruct: <|begin_of_text|><|start_header_id|>ROLE<|end_header_id|>\n\n...<|eot_id|>
  kLlama3,
  // ChatML as used by Qwen2: <|im_start|>ROLE\n...<|im_end|>\n
  kChatml,
  // Qwen 3: ChatML plus <think> blocks in assistant turns after the last
  // user query, and enable_thinking.
  kQwen3,
};

// "llama3", "chatml" or "qwen3" (exact, lower case). INVALID_ARGUMENT naming
// the unknown name otherwise.
StatusOr<ChatTemplateFamily> ChatTemplateFamilyFromName(absl::string_view name);

// The inverse of ChatTemplateFamilyFromName: "llama3" / "chatml" / "qwen3".
const char* ChatTemplateFamilyName(ChatTemplateFamily family);

// Detects the family of a tokenizer_config.json `chat_template` Jinja string:
// one that mentions "<|start_header_id|>" is llama3, else one that mentions
// "<|im_start|>" is qwen3 when it also mentions "<think>", chatml otherwise. NOT_FOUND for an empty string (the model
// has no chat template); INVALID_ARGUMENT for a template of any other family.
StatusOr<ChatTemplateFamily> DetectChatTemplateFamily(absl::string_view jinja);

// Renders `messages` in `family`'s format.
//  llama3: "<|begin_of_text|>" then, per message,
//          "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + trim(content) + "<|eot_id|>";
//          with add_generation_prompt: "<|start_header_id|>assistant<|end_header_id|>\n\n".
//          trim() strips leading/trailing whitespace as Jinja's `trim` (Python
//          str.strip()) does, Unicode whitespace included.
//  chatml: per message "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
//          with add_generation_prompt: "<|im_start|>assistant\n". No default
//          system message is inserted (Qwen2's own template adds
//          "You are a helpful assistant." when the first message is not a
//          system one; pass it explicitly to reproduce that).
//  qwen3:  byte-for-byte Qwen 3's own template (without tools): a leading
//          system message first; user (and later system) turns as chatml;
//          an assistant turn's thinking is its reasoning_content, else the
//          text between "<think>" and the first "</think>" of its content
//          (the content keeping what follows the last "</think>"). Assistant
//          turns after the last user query that is not a
//          "<tool_response>...</tool_response>" are written
//          "<|im_start|>assistant\n<think>\n" + thinking + "\n</think>\n\n" +
//          content when they are the last message or have thinking; every
//          other assistant turn is "<|im_start|>assistant\n" + content.
//          Generation prompt "<|im_start|>assistant\n", followed by
//          "<think>\n\n</think>\n\n" when enable_thinking is false.
// INVALID_ARGUMENT for an empty message list or a role other than
// system/user/assistant (the message names the role and its index).
StatusOr<std::string> ApplyChatTemplate(ChatTemplateFamily family, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt);
StatusOr<std::string> ApplyChatTemplate(ChatTemplateFamily family, const std::vector<ChatMessage>& messages,
                                        const ChatTemplateOptions& options);

// Jinja source of `family`'s template, in the shape of the real Llama-3 /
// ChatML / Qwen 3 templates; rendering it with a Jinja engine (with bos_token =
// "<|begin_of_text|>" for llama3) gives exactly what ApplyChatTemplate renders.
// Written into generated tokenizer_config.json files.
std::string ChatTemplateJinja(ChatTemplateFamily family);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_CHAT_TEMPLATE_H_
