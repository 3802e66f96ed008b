// Pretraining data: UTF-8 checks, corpus reading, windowing, held-out slice,
// task mixture and determinism; and that pretraining on it lowers held-out loss.
#include "trainer/pretrain.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/model.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "trainer/sft.h"
#include "trainer/train_loop.h"
#include "trainer/trainable.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;

void WriteFile(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// English-like text: a few sentence templates with varying words.
std::string Prose(int sentences, uint64_t seed) {
  const char* subjects[] = {"The cat", "A small dog", "My old friend", "The teacher", "Every child"};
  const char* verbs[] = {"likes", "sees", "finds", "reads", "wants"};
  const char* objects[] = {"the red ball.", "a long book.", "the quiet garden.", "some warm bread.", "the sea."};
  std::string out;
  uint64_t x = seed * 2654435761u + 1;
  for (int i = 0; i < sentences; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    out += subjects[(x >> 33) % 5];
    out += " ";
    out += verbs[(x >> 40) % 5];
    out += " ";
    out += objects[(x >> 50) % 5];
    out += (i % 6 == 5) ? "\n" : " ";
  }
  return out;
}

class PretrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    dir_ = new std::string(::testing::TempDir() + "/pretrain_test_tiny");
    TinyModelOptions o;
    o.layers = 1, o.hidden = 32, o.heads = 2, o.kv_heads = 1, o.seed = 5;
    ASSERT_TRUE(InitTinyModel(o, *dir_).ok());
  }
  void SetUp() override {
    tok_ = *Tokenizer::FromModelDir(*dir_);
    end_id_ = tok_->eos_ids()[0];
  }
  std::string Temp(const std::string& name) {
    std::string p = ::testing::TempDir() + "/pretrain_test/" + name;
    fs::remove_all(p);
    return p;
  }
  static std::string* dir_;
  std::unique_ptr<Tokenizer> tok_;
  int32_t end_id_ = 0;
};
std::string* PretrainTest::dir_ = nullptr;

TEST_F(PretrainTest, ReadsFilesAndFoldersInOrderAndNamesBadFiles) {
  const std::string root = Temp("corpus");
  WriteFile(root + "/b.txt", "second");
  WriteFile(root + "/a.txt", "first");
  WriteFile(root + "/sub/c.txt", "third");
  WriteFile(root + "/empty.txt", "");
  fs::create_symlink(root + "/a.txt", root + "/alias.txt");  // skipped: not read twice
  WriteFile(Temp("single.txt"), "alone");
  auto docs = ReadCorpus({root, ::testing::TempDir() + "/pretrain_test/single.txt"});
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 4u);
  EXPECT_EQ((*docs)[0].text, "first");
  EXPECT_EQ((*docs)[1].text, "second");
  EXPECT_EQ((*docs)[2].text, "third");
  EXPECT_EQ((*docs)[3].text, "alone");

  const std::string bad = Temp("bad") + "/latin1.txt";
  WriteFile(bad, "na\xEFve text");
  Status s = ReadCorpus({root, bad}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(bad), std::string::npos) << s;
  EXPECT_NE(s.message().find("UTF-8"), std::string::npos) << s;
  EXPECT_NE(s.message().find("offset 2"), std::string::npos) << s;

  s = ReadCorpus({root + "/missing.txt"}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("missing.txt"), std::string::npos) << s;

  const std::string empty = Temp("empty");
  WriteFile(empty + "/nothing.txt", "");
  s = ReadCorpus({empty}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no text"), std::string::npos) << s;
  EXPECT_EQ(ReadCorpus({}).status().code(), absl::StatusCode::kInvalidArgument);
}

// Text whose 15-token windows are all distinct: each holds a whole 6-digit number.
std::string Numbered(int n, int first) {
  std::string out;
  for (int i = 0; i < n; ++i) out += std::to_string(first + i) + " ";
  return out;
}

TEST(CorpusSentencesTest, CutsEntriesIntoPlainSentencesInASeededOrder) {
  std::vector<CorpusDocument> docs = {
      {"a",
       "The cat sat on\n   the warm mat. Is it   asleep now?\n\t-- Someone Famous\n%\n"
       "(1) Numbered lines are not sentences here.\nThe cat sat on the warm mat.\n%\n"
       "Caf\xc3\xa9 owners never sleep at all. Too short.\n"},
      {"b",
       "One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
       "seventeen eighteen nineteen twenty twentyone. No separator in this whole document!\n"}};
  std::vector<CorpusSentence> all = CorpusSentences(docs, 100, 7);
  std::map<std::string, int64_t> got;
  for (const CorpusSentence& s : all) got[s.text] = s.document;
  // Whitespace runs collapsed, attribution dropped, the repeat kept once; the
  // numbered line, the non-ASCII, the two-word and the 21-word ones are not sentences.
  const std::map<std::string, int64_t> want = {
      {"The cat sat on the warm mat.", 0}, {"Is it asleep now?", 0}, {"No separator in this whole document!", 1}};
  EXPECT_EQ(got, want);
  EXPECT_EQ(all.size(), 3u);
  // Same seed, same order; n caps the count.
  std::vector<CorpusSentence> again = CorpusSentences(docs, 100, 7);
  ASSERT_EQ(again.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(again[i].text, all[i].text);
  EXPECT_EQ(CorpusSentences(docs, 2, 7).size(), 2u);
  EXPECT_TRUE(CorpusSentences(docs, 0, 7).empty());
  // Over 120 bytes is not a sentence, whatever its word count.
  std::string long_words = "Antidisestablishmentarianism";
  for (int i = 0; i < 4; ++i) long_words += " antidisestablishmentarianism";
  EXPECT_TRUE(CorpusSentences({{"c", long_words + ".\n"}}, 10, 1).empty());
}

TEST_F(PretrainTest, CutsWindowsHoldsOutASliceAndCountsTokens) {
  std::vector<CorpusDocument> docs = {{"a", Numbered(60, 100000)}, {"b", Numbered(35, 200000)}};
  PretrainDataOptions o;
  o.window = 16;
  o.held_out_fraction = 0.1;
  o.seed = 7;
  auto data = BuildPretrainData(docs, *tok_, end_id_, o);
  ASSERT_TRUE(data.ok()) << data.status();
  // Byte-level tokenizer: one token per byte, plus one end token per document.
  const int64_t tokens = static_cast<int64_t>(docs[0].text.size() + docs[1].text.size()) + 2;
  EXPECT_EQ(data->corpus_tokens, tokens);
  EXPECT_EQ(data->corpus_bytes, tokens - 2);
  // 15 text tokens after BOS per window; a last window of one token is dropped.
  const int64_t tail = tokens % 15;
  const int64_t windows = tokens / 15 + (tail >= 2 ? 1 : 0);
  const int64_t covered = tokens - (tail >= 2 ? 0 : tail);
  const int64_t held = static_cast<int64_t>(std::ceil(0.1 * windows));
  EXPECT_EQ(static_cast<int64_t>(data->held_out.size()), held);
  EXPECT_EQ(data->text_windows, windows - held);
  EXPECT_EQ(static_cast<int64_t>(data->train.size()), windows - held);
  EXPECT_EQ(data->task_examples, 0);
  int64_t total = 0;
  for (const auto* set : {&data->train, &data->held_out}) {
    for (const TokenizedSequence& s : *set) {
      EXPECT_EQ(s.tokens[0], *tok_->bos_id());
      EXPECT_EQ(s.prompt_len, 1);
      EXPECT_LE(static_cast<int64_t>(s.tokens.size()), 16);
      EXPECT_GE(s.tokens.size(), 3u);  // BOS and >= 2 text tokens
      total += static_cast<int64_t>(s.tokens.size()) - 1;
    }
  }
  EXPECT_EQ(total, covered);  // every token in exactly one window
  // The windows decode back to the text: the held-out ones are not in the training set.
  std::set<std::vector<int32_t>> train_set;
  for (const auto& s : data->train) train_set.insert(s.tokens);
  for (const auto& s : data->held_out) EXPECT_EQ(train_set.count(s.tokens), 0u);
}

TEST_F(PretrainTest, MixesTaskExamplesAtTheRequestedFraction) {
  std::vector<CorpusDocument> docs = {{"a", Prose(300, 3)}};
  PretrainDataOptions o;
  o.window = 32;
  o.held_out_fraction = 0.05;
  o.task_fraction = 0.2;
  o.tasks = {"reverse", "sort"};
  o.seed = 1;
  auto data = BuildPretrainData(docs, *tok_, end_id_, o);
  ASSERT_TRUE(data.ok()) << data.status();
  const int64_t expected = std::llround(data->text_windows * 0.2 / 0.8);
  EXPECT_EQ(data->task_examples, expected);
  EXPECT_EQ(static_cast<int64_t>(data->train.size()), data->text_windows + expected);
  int reverse = 0, sort = 0;
  for (const TokenizedSequence& s : data->train) {
    const std::string text = tok_->Decode(s.tokens, /*skip_special=*/true);
    if (text.rfind("rev ", 0) == 0) ++reverse;
    if (text.rfind("sort ", 0) == 0) ++sort;
    if (text.rfind("rev ", 0) == 0 || text.rfind("sort ", 0) == 0) {
      EXPECT_EQ(s.prompt_len, 1);
      EXPECT_EQ(s.tokens.back(), end_id_);
    }
  }
  EXPECT_EQ(reverse + sort, expected);
  EXPECT_LE(std::abs(reverse - sort), 1);
  // No held-out sequence is a task example.
  for (const TokenizedSequence& s : data->held_out) {
    const std::string text = tok_->Decode(s.tokens, true);
    EXPECT_NE(text.rfind("rev ", 0), 0u);
  }
}

TEST_F(PretrainTest, SameSeedSameDataOtherSeedOtherOrder) {
  std::vector<CorpusDocument> docs = {{"a", Prose(200, 4)}};
  PretrainDataOptions o;
  o.window = 24;
  o.task_fraction = 0.1;
  o.tasks = {"add"};
  o.seed = 11;
  auto a = BuildPretrainData(docs, *tok_, end_id_, o);
  auto b = BuildPretrainData(docs, *tok_, end_id_, o);
  o.seed = 12;
  auto c = BuildPretrainData(docs, *tok_, end_id_, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  auto tokens = [](const std::vector<TokenizedSequence>& v) {
    std::vector<std::vector<int32_t>> out;
    for (const auto& s : v) out.push_back(s.tokens);
    return out;
  };
  EXPECT_EQ(tokens(a->train), tokens(b->train));
  EXPECT_EQ(tokens(a->held_out), tokens(b->held_out));
  EXPECT_NE(tokens(a->train), tokens(c->train));
  EXPECT_EQ(a->train.size(), c->train.size());
}

TEST_F(PretrainTest, RejectsBadOptionsAndTooSmallCorpora) {
  std::vector<CorpusDocument> docs = {{"a", Prose(20, 5)}};
  auto expect_invalid = [&](const PretrainDataOptions& o, const std::string& word) {
    Status s = BuildPretrainData(docs, *tok_, end_id_, o).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << word;
    EXPECT_NE(s.message().find(word), std::string::npos) << s;
  };
  PretrainDataOptions o;
  o.window = 3;
  expect_invalid(o, "window");
  o = {};
  o.held_out_fraction = 0.7;
  expect_invalid(o, "held_out_fraction");
  o = {};
  o.task_fraction = 0.95;
  o.tasks = {"sort"};
  expect_invalid(o, "task_fraction");
  o = {};
  o.task_fraction = 0.1;
  expect_invalid(o, "no task");
  o = {};
  o.task_fraction = 0.1;
  o.tasks = {"division"};
  expect_invalid(o, "tasks[0]");
  o = {};
  o.window = 4096;  // one window only: nothing left after the held-out one
  expect_invalid(o, "too few");
  EXPECT_EQ(BuildPretrainData({}, *tok_, end_id_, PretrainDataOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A few seconds of pretraining on prose lowers the loss on held-out windows
// well below the random model's (about ln(vocab) = 5.6 nats per byte).
TEST_F(PretrainTest, PretrainingLowersHeldOutLoss) {
  std::vector<CorpusDocument> docs = {{"a", Prose(400, 6)}};
  PretrainDataOptions o;
  o.window = 48;
  o.held_out_fraction = 0.1;
  o.task_fraction = 0.05;
  o.tasks = {"sort"};
  o.seed = 2;
  auto data = BuildPretrainData(docs, *tok_, end_id_, o);
  ASSERT_TRUE(data.ok()) << data.status();
  auto model = *LoadModel(*dir_, at::kFloat);
  const double before = *ResponseLoss(*model->transformer, *model->weights, data->held_out, 16);
  auto tw = *TrainableWeights::Create(model->weights, LoraConfig{}, 1);
  SftObjective objective(*model->transformer, data->train);
  LoopConfig c;
  c.steps = 60;
  c.batch_size = 16;
  c.optim.lr = 1e-2;
  c.optim.warmup_steps = 5;
  auto result = RunTrainingLoop(*tw, objective, c, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  auto merged = *tw->Merged();
  const double after = *ResponseLoss(*model->transformer, *merged, data->held_out, 16);
  EXPECT_GT(before, 5.0);
  EXPECT_LT(after, 3.0) << "before " << before;
}

}  // namespace
}  // namespace skillpack
