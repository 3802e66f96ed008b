#include "trainer/tasks/phrasing_grammar.h"

#include <set>

#include <gtest/gtest.h>

namespace skillpack {
namespace {

TEST(PhrasingGrammarTest, EveryComposedTemplateFillsAndNoneIsAHeldOutTemplate) {
  const std::map<std::string, std::string> canonical = {{"add", "37+45="},
                                                        {"reverse", "rev abcd="},
                                                        {"sort", "sort 5391="},
                                                        {"kv", "a=3;b=5 b?"},
                                                        {"caesar", "rot3 abc="}};
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = *MakeTask(name);
    auto composed = ComposedTemplates(name);
    ASSERT_TRUE(composed.ok()) << composed.status();
    ASSERT_GE(NumPhrasingCores(name), 15);
    // Each core in at least ten frames, every template distinct.
    EXPECT_GE(composed->size(), 10u * static_cast<size_t>(NumPhrasingCores(name)));
    EXPECT_EQ(std::set<std::string>(composed->begin(), composed->end()).size(), composed->size());
    std::set<std::string> held_out;
    for (TemplateSplit split : kHeldOutTemplateSplits) {
      auto templates = ParaphraseTemplates(name, split);
      ASSERT_TRUE(templates.ok()) << templates.status();
      for (const std::string& h : *templates) held_out.insert(NormalizedPhrasing(h));
    }
    for (const std::string& t : *composed) {
      auto filled = Paraphrase(*task, canonical.at(name), t);
      ASSERT_TRUE(filled.ok()) << t << ": " << filled.status();
      EXPECT_EQ(held_out.count(NormalizedPhrasing(t)), 0u) << "composed \"" << t << "\" is a held-out template";
    }
  }
}

TEST(PhrasingGrammarTest, FramesWrapCoresAsWrittenLessHeldOutTemplates) {
  auto composed = *ComposedTemplates("reverse");
  const std::set<std::string> all(composed.begin(), composed.end());
  // The first imperative core in polite frames; the first question core with
  // and without its question mark and capital.
  for (const char* t : {"Can you reverse {s}?", "Please reverse {s}.", "Reverse {s}, please.", "What is {s} backwards?",
                        "what is {s} backwards?", "Quick question: what is {s} backwards?"}) {
    EXPECT_EQ(all.count(t), 1u) << t;
  }
  // The same core bare is a held-out template of kFresh2 ("reverse {s}"):
  // left out in every case and punctuation.
  for (const char* t : {"reverse {s}", "Reverse {s}", "Reverse {s}."}) EXPECT_EQ(all.count(t), 0u) << t;
  // Question cores never go in imperative frames, nor the reverse.
  EXPECT_EQ(all.count("Can you what is {s} backwards?"), 0u);
  EXPECT_EQ(all.count("Quick question: reverse {s}?"), 0u);
}

TEST(PhrasingGrammarTest, ComposedParaphrasesAreDeterministicAndStateTheirProblem) {
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = *MakeTask(name);
    auto a = GenerateComposedParaphrases(*task, TaskSplit::kTrain, 400, 5);
    auto b = GenerateComposedParaphrases(*task, TaskSplit::kTrain, 400, 5);
    auto c = GenerateComposedParaphrases(*task, TaskSplit::kTrain, 400, 6);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status();
    ASSERT_EQ(a->size(), 400u);
    std::set<int> cores;
    std::set<std::string> texts;
    int same_as_other_seed = 0;
    for (size_t i = 0; i < a->size(); ++i) {
      const ParaphrasedExample& p = (*a)[i];
      EXPECT_EQ(p.text, (*b)[i].text);
      same_as_other_seed += p.text == (*c)[i].text;
      ASSERT_GE(p.template_index, 0);
      ASSERT_LT(p.template_index, NumPhrasingCores(name));
      cores.insert(p.template_index);
      texts.insert(p.text);
      EXPECT_TRUE(task->Verify(p.canonical.prompt, p.canonical.response)) << p.canonical.prompt;
      EXPECT_EQ(SplitOfPrompt(p.canonical.prompt), TaskSplit::kTrain);
      EXPECT_NE(p.text, p.canonical.prompt);
    }
    EXPECT_EQ(static_cast<int>(cores.size()), NumPhrasingCores(name)) << "400 draws use every core";
    EXPECT_GT(texts.size(), 300u);
    EXPECT_LT(same_as_other_seed, 40);
  }
}

TEST(PhrasingGrammarTest, ComposedGeneralPromptsUseTrainingTopicsOnly) {
  const std::vector<GeneralPrompt> a = ComposedGeneralPrompts(500, 3);
  const std::vector<GeneralPrompt> b = ComposedGeneralPrompts(500, 3);
  ASSERT_EQ(a.size(), 500u);
  const std::vector<std::string> topics = GeneralTopics(TemplateSplit::kTrain, true);
  std::set<std::string> held_out;
  for (TemplateSplit split : kHeldOutTemplateSplits) {
    for (const std::string& g : GeneralPrompts(split, NumGeneralPrompts(split), 1))
      held_out.insert(NormalizedPhrasing(g));
  }
  std::set<int> cores;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].text, b[i].text);
    ASSERT_GE(a[i].topic, 0);
    ASSERT_LT(a[i].topic, static_cast<int>(topics.size()));
    EXPECT_NE(a[i].text.find(topics[static_cast<size_t>(a[i].topic)]), std::string::npos) << a[i].text;
    EXPECT_EQ(a[i].text.find("{t}"), std::string::npos) << a[i].text;
    EXPECT_EQ(held_out.count(NormalizedPhrasing(a[i].text)), 0u) << a[i].text;
    cores.insert(a[i].opener);
  }
  EXPECT_GE(cores.size(), 15u);
  EXPECT_TRUE(ComposedGeneralPrompts(0, 3).empty());
}

TEST(PhrasingGrammarTest, TaskWithoutCoresIsRejectedWithItsName) {
  auto s = ComposedTemplates("nosuch");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("'nosuch'"), std::string::npos) << s.status();
  EXPECT_EQ(NumPhrasingCores("nosuch"), 0);
}

}  // namespace
}  // namespace skillpack
