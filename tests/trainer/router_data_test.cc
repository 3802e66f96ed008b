#include "trainer/tasks/router_data.h"

#include <map>
#include <set>

#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "tests/trainer/trainer_binary.h"
#include "trainer/tasks/paraphrase.h"
#include "trainer/tasks/phrasing_grammar.h"

namespace skillpack {
namespace {

// The kind of a record from its group: "raw", "t" (template), "c" (composed
// core), "o" (general opener) or "gc" (composed general core).
std::string Kind(const RouterDataRecord& r) {
  const std::string first = r.group.substr(0, r.group.find('|'));
  const std::string key = first.substr(first.find(':') + 1);
  if (key == "raw") return "raw";
  if (r.label == "none") return key[0] == 'o' ? "o" : "gc";
  return key.substr(0, 1);
}

TEST(RouterDataTest, EveryKindInItsCountWithItsLabelAndGroup) {
  RouterDataOptions o;
  o.per_task = 50;
  o.general = 30;
  o.seed = 7;
  auto data = MakeRouterData({"sort", "reverse"}, o);
  ASSERT_TRUE(data.ok()) << data.status();
  std::map<std::pair<std::string, std::string>, int> count;  // (label, kind)
  for (const RouterDataRecord& r : *data) {
    ++count[{r.label, Kind(r)}];
    EXPECT_TRUE(absl::StartsWith(r.group, r.label + ":")) << r.group;
    EXPECT_FALSE(r.prompt.empty());
  }
  for (const char* task : {"sort", "reverse"}) {
    for (const char* kind : {"raw", "t", "c"}) EXPECT_EQ((count[{task, kind}]), 50) << task << " " << kind;
  }
  EXPECT_EQ((count[{"none", "o"}]), 30);
  EXPECT_EQ((count[{"none", "gc"}]), 30);
  EXPECT_EQ(data->size(), 2u * 150 + 60);
  // Tasks in the order given, then the general prompts.
  EXPECT_EQ(data->front().label, "sort");
  EXPECT_EQ((*data)[150].label, "reverse");
  EXPECT_EQ(data->back().label, "none");
  // Raw prompts are the task's own format.
  EXPECT_TRUE(absl::StartsWith(data->front().prompt, "sort ")) << data->front().prompt;

  auto again = MakeRouterData({"sort", "reverse"}, o);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < data->size(); ++i) ASSERT_EQ((*data)[i].prompt, (*again)[i].prompt) << i;
  o.seed = 8;
  auto other = MakeRouterData({"sort", "reverse"}, o);
  int same = 0;
  for (size_t i = 0; i < data->size(); ++i) same += (*data)[i].prompt == (*other)[i].prompt;
  EXPECT_LT(same, 60) << "another seed draws other prompts";

  o.composed = false;
  auto plain = MakeRouterData({"sort", "reverse"}, o);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->size(), 2u * 100 + 30);
  for (const RouterDataRecord& r : *plain) EXPECT_NE(Kind(r), "c") << r.group;
}

TEST(RouterDataTest, NoHeldOutPhrasingAppears) {
  RouterDataOptions o;
  o.per_task = 300;
  o.general = 2000;  // more than the training split has: capped, composed ones as asked
  auto data = MakeRouterData({"add", "reverse", "sort", "kv"}, o);
  ASSERT_TRUE(data.ok()) << data.status();
  std::set<std::string> held_out_general;
  for (TemplateSplit split : kHeldOutTemplateSplits) {
    for (const std::string& g : GeneralPrompts(split, NumGeneralPrompts(split), 1)) held_out_general.insert(g);
  }
  int general = 0;
  for (const RouterDataRecord& r : *data) {
    if (r.label != "none") continue;
    ++general;
    EXPECT_EQ(held_out_general.count(r.prompt), 0u) << r.prompt;
  }
  EXPECT_EQ(general, NumGeneralPrompts(TemplateSplit::kTrain, true) + 2000);
  // The paraphrases come from training templates only (composed phrasings
  // leave held-out templates out: phrasing_grammar_test).
  for (const RouterDataRecord& r : *data) {
    if (Kind(r) != "t") continue;
    const int index = std::stoi(r.group.substr(r.group.find(":t") + 2));
    EXPECT_FALSE(index < static_cast<int>(kFirstExtraTemplate) && index % 4 == 3) << r.group << " is held out";
  }
}

TEST(RouterDataTest, TopicWordsAddComposedGeneralPromptsOverThem) {
  RouterDataOptions o;
  o.per_task = 20;
  o.general = 40;
  o.seed = 2;
  const auto without = *MakeRouterData({"reverse"}, o);
  o.topic_words = {"marmalade", "tugboats", "quarries"};
  const auto with = *MakeRouterData({"reverse"}, o);
  ASSERT_EQ(with.size(), without.size() + 40);
  // The records before them are unchanged; the new ones come last.
  for (size_t i = 0; i < without.size(); ++i) ASSERT_EQ(with[i].prompt, without[i].prompt) << i;
  std::set<std::string> used;
  for (size_t i = without.size(); i < with.size(); ++i) {
    const RouterDataRecord& r = with[i];
    EXPECT_EQ(r.label, "none");
    const size_t w = r.group.find("|none:w");
    ASSERT_NE(w, std::string::npos) << r.group;
    EXPECT_TRUE(absl::StartsWith(r.group, "none:c")) << r.group;
    const std::string& word = o.topic_words.at(std::stoul(r.group.substr(w + 7)));
    EXPECT_NE(r.prompt.find(word), std::string::npos) << r.prompt;
    used.insert(word);
  }
  EXPECT_EQ(used.size(), 3u);
  // Without composed phrasings the words add nothing.
  o.composed = false;
  o.topic_words.clear();
  const auto plain = *MakeRouterData({"reverse"}, o);
  o.topic_words = {"marmalade"};
  EXPECT_EQ(MakeRouterData({"reverse"}, o)->size(), plain.size());
}

TEST(RouterDataTest, ContextsAddPhrasingsPerTaskAndGeneralPromptsInContextFrames) {
  RouterDataOptions o;
  o.per_task = 30;
  o.general = 20;
  o.seed = 4;
  const auto without = *MakeRouterData({"add", "reverse"}, o);
  o.contexts = true;
  const auto with = *MakeRouterData({"add", "reverse"}, o);
  ASSERT_EQ(with.size(), without.size() + 2 * 30 + 20);
  // Every record without contexts is still there, in the same order.
  size_t j = 0;
  for (const RouterDataRecord& r : with) j += j < without.size() && r.prompt == without[j].prompt;
  EXPECT_EQ(j, without.size());
  std::set<std::string> before;
  for (const RouterDataRecord& r : without) before.insert(r.prompt);
  std::map<std::string, int> added, situated;
  for (const RouterDataRecord& r : with) {
    if (before.count(r.prompt)) continue;
    ++added[r.label];
    const std::string key = r.group.substr(r.group.find(':') + 1);
    ASSERT_EQ(key[0], 'c') << r.group;  // a context phrasing's group is its core's, shared with the composed ones
    const int core = std::stoi(key.substr(1));
    if (r.label == "none") {
      EXPECT_NE(r.group.find("|none:t"), std::string::npos) << r.group;  // the training topics without words
    } else {
      ASSERT_LT(core, NumPhrasingCores(r.label, true)) << r.group;
      situated[r.label] += core >= NumPhrasingCores(r.label);
    }
  }
  EXPECT_EQ(added["add"], 30);
  EXPECT_EQ(added["reverse"], 30);
  EXPECT_EQ(added["none"], 20);
  EXPECT_GT(situated["add"], 0);
  // Over topic words when there are some.
  o.topic_words = {"marmalade", "tugboats"};
  const auto words = *MakeRouterData({"add", "reverse"}, o);
  ASSERT_EQ(words.size(), with.size() + 20);
  for (size_t i = words.size() - 20; i < words.size(); ++i) {
    EXPECT_NE(words[i].group.find("|none:w"), std::string::npos) << words[i].group;
    EXPECT_TRUE(absl::StrContains(words[i].prompt, "marmalade") || absl::StrContains(words[i].prompt, "tugboats"))
        << words[i].prompt;
  }
}

TEST(RouterDataTest, MadeUpTopicsAddGeneralPromptsOverMadeUpWords) {
  RouterDataOptions o;
  o.per_task = 10;
  o.general = 30;
  o.seed = 5;
  const auto without = *MakeRouterData({"sort"}, o);
  o.made_up_topics = true;
  const auto with = *MakeRouterData({"sort"}, o);
  ASSERT_EQ(with.size(), without.size() + 30);
  // The added ones follow the other composed general prompts, label none,
  // grouped by core and made-up word, each filled with one of the words.
  const std::vector<std::string> made_up = MadeUpTopicWords(1000, 5 * 1000003 + 8);
  size_t j = 0;
  std::set<std::string> words_used;
  for (const RouterDataRecord& r : with) {
    if (j < without.size() && r.prompt == without[j].prompt) {
      ++j;
      continue;
    }
    EXPECT_EQ(r.label, "none");
    const size_t m = r.group.find("|none:m");
    ASSERT_NE(m, std::string::npos) << r.group;
    EXPECT_EQ(r.group.rfind("none:c", 0), 0u) << r.group;
    const std::string& word = made_up.at(std::stoul(r.group.substr(m + 7)));
    EXPECT_TRUE(absl::StrContains(r.prompt, word)) << r.prompt << " / " << word;
    words_used.insert(word);
  }
  EXPECT_EQ(j, without.size());  // every record without them is still there, in order
  EXPECT_GT(words_used.size(), 20u);
  // Without composed phrasings they add nothing.
  o.composed = false;
  const auto plain = *MakeRouterData({"sort"}, o);
  o.made_up_topics = false;
  EXPECT_EQ(MakeRouterData({"sort"}, o)->size(), plain.size());
}

TEST(RouterDataTest, BadArgumentsAreNamed) {
  RouterDataOptions o;
  auto s = MakeRouterData({"reverse", "nosuch"}, o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("nosuch"), std::string::npos) << s.status();
  s = MakeRouterData({"reverse", "reverse"}, o);
  EXPECT_NE(s.status().message().find("'reverse' is listed twice"), std::string::npos) << s.status();
  s = MakeRouterData({}, o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  o.per_task = 0;
  s = MakeRouterData({"reverse"}, o);
  EXPECT_NE(s.status().message().find("per_task must be >= 1, got 0"), std::string::npos) << s.status();
  o.per_task = 1;
  o.general = -2;
  s = MakeRouterData({"reverse"}, o);
  EXPECT_NE(s.status().message().find("general must be >= 1, got -2"), std::string::npos) << s.status();
}

// The real binary writes JSONL that `skillpack router train` reads: one
// object per line with prompt, label and group.
TEST(MakeRouterDataCommandTest, WritesLabelledJsonl) {
  const std::string dir = ::testing::TempDir();
  const std::string out = dir + "/router-data.jsonl", log = dir + "/make-router-data.log";
  ASSERT_EQ(testing_util::RunTrainer({"make-router-data", "--tasks", "reverse,sort", "--n", "20", "--general", "10",
                                      "--seed", "3", "--out", out},
                                     log),
            0)
      << ReadFileToString(log).value_or("");
  auto text = ReadFileToString(out);
  ASSERT_TRUE(text.ok()) << text.status();
  RouterDataOptions o;
  o.per_task = 20;
  o.general = 10;
  o.seed = 3;
  auto expected = *MakeRouterData({"reverse", "sort"}, o);
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), expected.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    auto j = ParseJson(lines[i], "line");
    ASSERT_TRUE(j.ok()) << lines[i];
    EXPECT_EQ((*j)["prompt"], expected[i].prompt);
    EXPECT_EQ((*j)["label"], expected[i].label);
    EXPECT_EQ((*j)["group"], expected[i].group);
  }
  EXPECT_NE(ReadFileToString(log)->find(std::to_string(expected.size()) + " labelled prompts"), std::string::npos);
  // Errors name what is wrong and write nothing.
  const std::string bad = dir + "/bad.jsonl";
  EXPECT_EQ(testing_util::RunTrainer({"make-router-data", "--tasks", "reverse,nosuch", "--out", bad}, log), 1);
  EXPECT_NE(ReadFileToString(log)->find("nosuch"), std::string::npos) << *ReadFileToString(log);
  EXPECT_FALSE(ReadFileToString(bad).ok());
  EXPECT_EQ(testing_util::RunTrainer({"make-router-data", "--tasks", "reverse", "--n", "0", "--out", bad}, log), 1);
  EXPECT_NE(ReadFileToString(log)->find("per_task must be >= 1"), std::string::npos) << *ReadFileToString(log);
  // --corpus-topics: as many more general prompts, over the corpus's topic
  // words (phrasing_grammar.h CorpusTopicWords).
  const std::string corpus = dir + "/topics.txt", topics_out = dir + "/router-topics.jsonl";
  ASSERT_TRUE(WriteFileAtomically(corpus, "marmalade marmalade marmalade; tugboats tugboats tugboats.\n").ok());
  ASSERT_EQ(testing_util::RunTrainer({"make-router-data", "--tasks", "reverse,sort", "--n", "20", "--general", "10",
                                      "--seed", "3", "--corpus-topics", corpus, "--out", topics_out},
                                     log),
            0)
      << ReadFileToString(log).value_or("");
  std::vector<std::string> topic_lines = absl::StrSplit(*ReadFileToString(topics_out), '\n', absl::SkipEmpty());
  ASSERT_EQ(topic_lines.size(), expected.size() + 10);
  for (size_t i = expected.size(); i < topic_lines.size(); ++i) {
    auto j = ParseJson(topic_lines[i], "line");
    ASSERT_TRUE(j.ok()) << topic_lines[i];
    EXPECT_EQ((*j)["label"], "none");
    const std::string prompt = (*j)["prompt"].get<std::string>();
    EXPECT_TRUE(absl::StrContains(prompt, "marmalade") || absl::StrContains(prompt, "tugboats")) << prompt;
  }
  EXPECT_EQ(testing_util::RunTrainer(
                {"make-router-data", "--tasks", "reverse", "--corpus-topics", dir + "/nosuch.txt", "--out", bad}, log),
            1);
  EXPECT_NE(ReadFileToString(log)->find("nosuch.txt"), std::string::npos) << *ReadFileToString(log);
  EXPECT_EQ(
      testing_util::RunTrainer(
          {"make-router-data", "--tasks", "reverse", "--no-composed", "--corpus-topics", corpus, "--out", bad}, log),
      1);
  EXPECT_NE(ReadFileToString(log)->find("--corpus-topics needs composed phrasings"), std::string::npos)
      << *ReadFileToString(log);
  EXPECT_FALSE(ReadFileToString(bad).ok());
  // --contexts and --made-up-topics: the records MakeRouterData makes with
  // the option; each needs composed phrasings.
  auto expect_flag = [&](const std::string& flag, RouterDataOptions with, size_t added) {
    SCOPED_TRACE(flag);
    const std::string flag_out = dir + "/router" + flag + ".jsonl";
    ASSERT_EQ(testing_util::RunTrainer({"make-router-data", "--tasks", "reverse,sort", "--n", "20", "--general", "10",
                                        "--seed", "3", flag, "--out", flag_out},
                                       log),
              0)
        << ReadFileToString(log).value_or("");
    const auto records = *MakeRouterData({"reverse", "sort"}, with);
    std::vector<std::string> flag_lines = absl::StrSplit(*ReadFileToString(flag_out), '\n', absl::SkipEmpty());
    ASSERT_EQ(flag_lines.size(), records.size());
    ASSERT_EQ(records.size(), expected.size() + added);
    for (size_t i = 0; i < flag_lines.size(); ++i) {
      const Json line = *ParseJson(flag_lines[i], "line");
      EXPECT_EQ(line["prompt"], records[i].prompt) << i;
      EXPECT_EQ(line["group"], records[i].group) << i;
    }
    EXPECT_EQ(
        testing_util::RunTrainer({"make-router-data", "--tasks", "reverse", "--no-composed", flag, "--out", bad}, log),
        1);
    EXPECT_NE(ReadFileToString(log)->find(flag + " needs composed phrasings"), std::string::npos)
        << *ReadFileToString(log);
    EXPECT_FALSE(ReadFileToString(bad).ok());
  };
  RouterDataOptions contexts = o;
  contexts.contexts = true;
  expect_flag("--contexts", contexts, 2 * 20 + 10);
  RouterDataOptions made_up = o;
  made_up.made_up_topics = true;
  expect_flag("--made-up-topics", made_up, 10);
}

}  // namespace
}  // namespace skillpack
