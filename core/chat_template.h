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
struct ChatMessage {
  std::string role;
  std::string content;
};

enum class ChatTemplateFamily {
  // Llama-3 instruct: <|begin_of_text|><|start_header_id|>ROLE<|end_header_id|>\n\n...<|eot_id|>
  kLlama3,
  // ChatML as used by Qwen2: <|im_start|>ROLE\n...<|im_end|>\n
  kChatml,
};

// "llama3" or "chatml" (exact, lower case). INVALID_ARGUMENT naming the
// unknown name otherwise.
StatusOr<ChatTemplateFamily> ChatTemplateFamilyFromName(absl::string_view name);

// The inverse of ChatTemplateFamilyFromName: "llama3" / "chatml".
const char* ChatTemplateFamilyName(ChatTemplateFamily family);

// Detects the family of a tokenizer_config.json `chat_template` Jinja string:
// one that mentions "<|start_header_id|>" is llama3, else one that mentions
// "<|im_start|>" is chatml. NOT_FOUND for an empty string (the model has no
// chat template); INVALID_ARGUMENT for a template of any other family.
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
// INVALID_ARGUMENT for an empty message list or a role other than
// system/user/assistant (the message names the role and its index).
StatusOr<std::string> ApplyChatTemplate(ChatTemplateFamily family, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt);

// Jinja source of `family`'s template, in the shape of the real Llama-3 /
// ChatML templates; rendering it with a Jinja engine (with bos_token =
// "<|begin_of_text|>" for llama3) gives exactly what ApplyChatTemplate renders.
// Written into generated tokenizer_config.json files.
std::string ChatTemplateJinja(ChatTemplateFamily family);

}  // namespace skillpack

#endif  // SKILLPACK_CORE_CHAT_TEMPLATE_H_
