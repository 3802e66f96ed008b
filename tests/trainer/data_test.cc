#include "trainer/data.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/file_util.h"
#include "core/tokenizer.h"

namespace skillpack {
namespace {

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_ = *Tokenizer::FromJson(MakeByteLevelTokenizerJson(), "byte-level", MakeByteLevelTokenizerConfigJson());
    eot_ = *tok_->TokenToId("<|eot_id|>");
    bos_ = *tok_->bos_id();
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = ::testing::TempDir() + "/" + name;
    EXPECT_TRUE(WriteFileAtomically(path, text).ok());
    return path;
  }
  std::unique_ptr<Tokenizer> tok_;
  int32_t eot_ = 0, bos_ = 0;
};

TEST_F(DataTest, ReadsPromptResponseAndChatMessages) {
  const std::string path = Write("sft.jsonl",
                                 "{\"prompt\": \"12+7=\", \"response\": \"19\"}\n"
                                 "\n"
                                 "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"},"
                                 " {\"role\": \"user\", \"content\": \"hi\"},"
                                 " {\"role\": \"assistant\", \"content\": \"hello\"}]}\n");
  auto recs = ReadSftJsonl(path, *tok_);
  ASSERT_TRUE(recs.ok()) << recs.status();
  ASSERT_EQ(recs->size(), 2u);
  EXPECT_EQ((*recs)[0].prompt, "12+7=");
  EXPECT_FALSE((*recs)[0].templated);
  EXPECT_TRUE((*recs)[1].templated);
  EXPECT_EQ((*recs)[1].response, "hello");
  EXPECT_EQ((*recs)[1].prompt,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nbe brief<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // A templated prompt carries its own BOS: exactly one.
  SequenceEncoder enc(*tok_, eot_, 256);
  auto seq = *enc.Encode((*recs)[1].prompt, (*recs)[1].response, true);
  EXPECT_EQ(seq.tokens[0], bos_);
  EXPECT_NE(seq.tokens[1], bos_);
  EXPECT_EQ(seq.tokens.back(), eot_);
}

TEST_F(DataTest, BadLinesNameTheFileLineAndField) {
  auto bad = ReadSftJsonl(Write("bad1.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": 3}\n"), *tok_);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("bad1.jsonl:2"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("prompt"), std::string::npos) << bad.status();
  auto not_json = ReadSftJsonl(Write("bad2.jsonl", "{nope\n"), *tok_);
  EXPECT_NE(not_json.status().message().find("bad2.jsonl:1"), std::string::npos);
  auto last_user = ReadSftJsonl(
      Write("bad3.jsonl",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}\n"),
      *tok_);
  EXPECT_NE(last_user.status().message().find("assistant"), std::string::npos) << last_user.status();
  EXPECT_EQ(ReadSftJsonl(Write("empty.jsonl", "\n\n"), *tok_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadSftJsonl(::testing::TempDir() + "/missing.jsonl", *tok_).status().code(), absl::StatusCode::kNotFound);
  auto pairs = ReadPreferenceJsonl(Write("pairs.jsonl", "{\"prompt\": \"p\", \"chosen\": \"c\"}\n"));
  EXPECT_NE(pairs.status().message().find("rejected"), std::string::npos) << pairs.status();
}

TEST_F(DataTest, WriteThenReadRoundTrips) {
  const std::string sft = ::testing::TempDir() + "/rt_sft.jsonl";
  ASSERT_TRUE(WriteSftJsonl(sft, {{"a\"b", "c\nd", false}}).ok());
  auto r = *ReadSftJsonl(sft, *tok_);
  EXPECT_EQ(r[0].prompt, "a\"b");
  EXPECT_EQ(r[0].response, "c\nd");
  const std::string dpo = ::testing::TempDir() + "/rt_dpo.jsonl";
  ASSERT_TRUE(WritePreferenceJsonl(dpo, {{"p", "yes", "no", false}}).ok());
  auto p = *ReadPreferenceJsonl(dpo);
  EXPECT_EQ(p[0].chosen, "yes");
  EXPECT_EQ(p[0].rejected, "no");
}

TEST_F(DataTest, EncoderAddsBosAndEndAndTruncates) {
  SequenceEncoder enc(*tok_, eot_, 8);
  auto s = *enc.Encode("ab=", "xyz", false);
  EXPECT_EQ(s.tokens, (std::vector<int32_t>{bos_, 'a', 'b', '=', 'x', 'y', 'z', eot_}));
  EXPECT_EQ(s.prompt_len, 4);
  EXPECT_EQ(s.num_response_tokens(), 4);
  auto cut = *enc.Encode("ab=", "xyzuvw", false);
  EXPECT_EQ(cut.tokens.size(), 8u);
  EXPECT_EQ(cut.tokens.back(), 'w' - 2);  // 'u': the end token was cut
  // Special tokens in responses are text, not control tokens.
  SequenceEncoder wide(*tok_, eot_, 64);
  auto special = *wide.Encode("q", "<|eot_id|>", false);
  EXPECT_EQ(special.num_response_tokens(), 11);
  EXPECT_EQ(enc.Encode("a very long prompt", "x", false).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DataTest, BatchesArePaddedRightWithTargetsOnResponsesOnly) {
  SequenceEncoder enc(*tok_, eot_, 64);
  auto a = *enc.Encode("ab=", "c", false);   // bos a b = c eot
  auto b = *enc.Encode("a=", "xyz", false);  // bos a = x y z eot
  TokenBatch batch = MakeTokenBatch({&a, &b});
  ASSERT_EQ(batch.tokens.sizes(), (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(batch.attention_mask[0].sum().item<int64_t>(), 6);
  EXPECT_EQ(batch.attention_mask[1].sum().item<int64_t>(), 7);
  EXPECT_EQ(batch.tokens[0][6].item<int64_t>(), 0);  // padding
  // targets[i][t] predicts token t+1.
  std::vector<int64_t> t0(batch.targets[0].data_ptr<int64_t>(), batch.targets[0].data_ptr<int64_t>() + 6);
  EXPECT_EQ(t0, (std::vector<int64_t>{-100, -100, -100, 'c', eot_, -100}));
  std::vector<int64_t> t1(batch.targets[1].data_ptr<int64_t>(), batch.targets[1].data_ptr<int64_t>() + 6);
  EXPECT_EQ(t1, (std::vector<int64_t>{-100, -100, 'x', 'y', 'z', eot_}));
  EXPECT_EQ(batch.num_target_tokens, 6);
}

}  // namespace
}  // namespace skillpack
