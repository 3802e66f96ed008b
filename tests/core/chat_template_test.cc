// Tests for core/chat_template.h: exact renderings of both families,
// detection from Jinja, and error cases.
#include "core/chat_template.h"

#include <gtest/gtest.h>

namespace skillpack {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are terse."},
    {"user", "  Hi there!\n"},
    {"assistant", "Hello."},
    {"user", "Bye"},
};

TEST(ChatTemplateTest, Llama3ExactWithGenerationPrompt) {
  auto text = ApplyChatTemplate(ChatTemplateFamily::kLlama3, kConversation, /*add_generation_prompt=*/true);
  ASSERT_TRUE(text.ok()) << text.status();
  // Content is trimmed ("  Hi there!\n" -> "Hi there!"), BOS only once at the start.
  EXPECT_EQ(*text,
            "<|begin_of_text|>"
            "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Llama3WithoutGenerationPrompt) {
  auto text = ApplyChatTemplate(ChatTemplateFamily::kLlama3, {{"user", "2+2?"}}, false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>");
}

TEST(ChatTemplateTest, Llama3TrimsUnicodeWhitespaceLikeJinja) {
  // U+3000 (ideographic space) and U+00A0 are whitespace to Python's strip();
  // the inner space and the non-space U+200B (zero width space) are kept.
  auto text =
      ApplyChatTemplate(ChatTemplateFamily::kLlama3, {{"user", "\xE3\x80\x80\xC2\xA0\t a b\xE2\x80\x8B \r\n"}}, false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\na b\xE2\x80\x8B<|eot_id|>");
  auto blank = ApplyChatTemplate(ChatTemplateFamily::kLlama3, {{"user", " \n "}}, false);
  ASSERT_TRUE(blank.ok());
  EXPECT_EQ(*blank, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>");
}

TEST(ChatTemplateTest, ChatmlExact) {
  auto text = ApplyChatTemplate(ChatTemplateFamily::kChatml, kConversation, true);
  ASSERT_TRUE(text.ok()) << text.status();
  // ChatML does not trim content.
  EXPECT_EQ(*text,
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\n  Hi there!\n<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
  auto no_prompt = ApplyChatTemplate(ChatTemplateFamily::kChatml, {{"user", "hi"}}, false);
  ASSERT_TRUE(no_prompt.ok());
  EXPECT_EQ(*no_prompt, "<|im_start|>user\nhi<|im_end|>\n");
}

TEST(ChatTemplateTest, RejectsUnknownRoleAndEmptyList) {
  auto bad = ApplyChatTemplate(ChatTemplateFamily::kLlama3, {{"user", "a"}, {"wizard", "b"}}, true);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'wizard'"), absl::string_view::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("message 1"), absl::string_view::npos) << bad.status();
  EXPECT_FALSE(ApplyChatTemplate(ChatTemplateFamily::kChatml, {{"", "x"}}, false).ok());
  auto empty = ApplyChatTemplate(ChatTemplateFamily::kChatml, {}, true);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, FamilyNames) {
  EXPECT_EQ(*ChatTemplateFamilyFromName("llama3"), ChatTemplateFamily::kLlama3);
  EXPECT_EQ(*ChatTemplateFamilyFromName("chatml"), ChatTemplateFamily::kChatml);
  auto bad = ChatTemplateFamilyFromName("mistral");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mistral"), absl::string_view::npos);
  EXPECT_STREQ(ChatTemplateFamilyName(ChatTemplateFamily::kLlama3), "llama3");
  EXPECT_STREQ(ChatTemplateFamilyName(ChatTemplateFamily::kChatml), "chatml");
}

TEST(ChatTemplateTest, DetectsFamilyFromJinja) {
  // Shapes of the real Meta-Llama-3-8B-Instruct and Qwen2-7B-Instruct templates.
  const char* llama3 =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
      "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
      "{% endfor %}";
  const char* qwen2 =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
      "{% endif %}";
  EXPECT_EQ(*DetectChatTemplateFamily(llama3), ChatTemplateFamily::kLlama3);
  EXPECT_EQ(*DetectChatTemplateFamily(qwen2), ChatTemplateFamily::kChatml);
  EXPECT_EQ(*DetectChatTemplateFamily(ChatTemplateJinja(ChatTemplateFamily::kLlama3)), ChatTemplateFamily::kLlama3);
  EXPECT_EQ(*DetectChatTemplateFamily(ChatTemplateJinja(ChatTemplateFamily::kChatml)), ChatTemplateFamily::kChatml);

  auto none = DetectChatTemplateFamily("");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  auto other = DetectChatTemplateFamily("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, JinjaSourceHasTheRealTemplatesShape) {
  const std::string llama3 = ChatTemplateJinja(ChatTemplateFamily::kLlama3);
  EXPECT_NE(llama3.find("bos_token + content"), std::string::npos);
  EXPECT_NE(llama3.find("message['content'] | trim + '<|eot_id|>'"), std::string::npos);
  // Jinja escapes, not raw newlines, as in the real files.
  EXPECT_NE(llama3.find("'<|end_header_id|>\\n\\n'"), std::string::npos);
  EXPECT_EQ(llama3.find('\n'), std::string::npos);
  const std::string chatml = ChatTemplateJinja(ChatTemplateFamily::kChatml);
  EXPECT_NE(chatml.find("'<|im_start|>assistant\\n'"), std::string::npos);
  EXPECT_EQ(chatml.find('\n'), std::string::npos);
}

TEST(ChatTemplateTest, Qwen3ThinkingBlocksAndEnableThinking) {
  const std::vector<ChatMessage> conversation = {
      {"system", "S"}, {"user", "2+2?"}, {"assistant", "<think>\nadd\n</think>\n\n4"}, {"user", "3+3?"}};
  ChatTemplateOptions options;
  auto text = ApplyChatTemplate(ChatTemplateFamily::kQwen3, conversation, options);
  ASSERT_TRUE(text.ok()) << text.status();
  // The thinking of turns before the last query is dropped.
  EXPECT_EQ(*text,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n");
  options.enable_thinking = false;
  auto no_think = ApplyChatTemplate(ChatTemplateFamily::kQwen3, conversation, options);
  ASSERT_TRUE(no_think.ok());
  EXPECT_EQ(*no_think, *text + "<think>\n\n</think>\n\n");
  // After the last query, the last assistant turn keeps its thinking (empty
  // or not), written as a <think> block; reasoning_content wins over content.
  auto tail = ApplyChatTemplate(ChatTemplateFamily::kQwen3,
                                {{"user", "q"}, {"assistant", "<think>r</think>a", "explicit"}, {"assistant", "b"}},
                                /*add_generation_prompt=*/false);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail,
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nexplicit\n</think>\n\n"
            "<think>r</think>a<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nb<|im_end|>\n");
  // enable_thinking does not change the other families.
  auto chatml = ApplyChatTemplate(ChatTemplateFamily::kChatml, {{"user", "hi"}}, options);
  ASSERT_TRUE(chatml.ok());
  EXPECT_EQ(*chatml, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, Qwen3DetectedAndNamed) {
  EXPECT_EQ(*ChatTemplateFamilyFromName("qwen3"), ChatTemplateFamily::kQwen3);
  EXPECT_STREQ(ChatTemplateFamilyName(ChatTemplateFamily::kQwen3), "qwen3");
  EXPECT_EQ(*DetectChatTemplateFamily(ChatTemplateJinja(ChatTemplateFamily::kQwen3)), ChatTemplateFamily::kQwen3);
  EXPECT_EQ(*DetectChatTemplateFamily(ChatTemplateJinja(ChatTemplateFamily::kChatml)), ChatTemplateFamily::kChatml);
  auto bad = ApplyChatTemplate(ChatTemplateFamily::kQwen3, {{"tool", "x"}}, true);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'tool'"), std::string::npos);
}

}  // namespace
}  // namespace skillpack
