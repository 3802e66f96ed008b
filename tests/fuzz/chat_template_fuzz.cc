// libFuzzer target: chat templates (core/chat_template.h). The input is a
// conversation: byte 0 picks the family (bit 0) and add_generation_prompt
// (bit 1); the rest is split at 0x1E (record separator) into role, content,
// role, content, ... The whole input is also given to the family detection
// and name parsing, as a tokenizer_config.json's chat_template would be.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/chat_template.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace skillpack;
  const std::string input(reinterpret_cast<const char*>(data), size);
  auto detected = DetectChatTemplateFamily(input);
  if (!detected.ok()) fuzz::CheckRejection(detected.status());
  auto named = ChatTemplateFamilyFromName(input);
  if (!named.ok()) fuzz::CheckRejection(named.status());
  if (size == 0) return 0;

  const ChatTemplateFamily family = (data[0] & 1) ? ChatTemplateFamily::kChatml : ChatTemplateFamily::kLlama3;
  const bool add_generation_prompt = (data[0] & 2) != 0;
  std::vector<std::string> fields;
  size_t start = 1;
  while (start <= input.size()) {
    size_t end = input.find('\x1e', start);
    if (end == std::string::npos) end = input.size();
    fields.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  std::vector<ChatMessage> messages;
  size_t content_bytes = 0;
  for (size_t i = 0; i + 1 < fields.size(); i += 2) {
    messages.push_back({fields[i], fields[i + 1]});
    content_bytes += fields[i].size() + fields[i + 1].size();
  }
  auto text = ApplyChatTemplate(family, messages, add_generation_prompt);
  if (!text.ok()) {
    fuzz::CheckRejection(text.status());
    FUZZ_CHECK(text.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(!messages.empty());
  // Every role and (trimmed) content appears in the text, plus fixed markup.
  FUZZ_CHECK(text->size() <= content_bytes + 64 * (messages.size() + 2));
  for (const ChatMessage& m : messages) FUZZ_CHECK(text->find(m.role) != std::string::npos);
  auto family_again = DetectChatTemplateFamily(ChatTemplateJinja(family));
  FUZZ_CHECK(family_again.ok() && *family_again == family);
  return 0;
}
