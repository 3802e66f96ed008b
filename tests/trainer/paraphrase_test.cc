#include "trainer/tasks/paraphrase.h"

#include <set>

#include <gtest/gtest.h>

namespace skillpack {
namespace {

TEST(ParaphraseTest, TemplateSplitIsDisjointAndCoversEveryTemplate) {
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto all = ParaphraseTemplates(name);
    auto train = ParaphraseTemplates(name, TemplateSplit::kTrain);
    auto held = ParaphraseTemplates(name, TemplateSplit::kHeldOut);
    ASSERT_TRUE(all.ok() && train.ok() && held.ok()) << all.status();
    EXPECT_GE(held->size(), 2u);
    EXPECT_GE(train->size(), 4u);
    EXPECT_EQ(train->size() + held->size(), all->size());
    std::set<std::string> t(train->begin(), train->end());
    for (const std::string& h : *held) EXPECT_EQ(t.count(h), 0u) << h;
    std::set<std::string> everything(all->begin(), all->end());
    EXPECT_EQ(everything.size(), all->size()) << "a template is listed twice";
  }
}

TEST(ParaphraseTest, KnownParaphrases) {
  auto rev = *MakeTask("reverse");
  EXPECT_EQ(*Paraphrase(*rev, "rev abcd=", "Reverse the string {s}"), "Reverse the string abcd");
  auto sort = *MakeTask("sort");
  EXPECT_EQ(*Paraphrase(*sort, "sort 5391=", "Can you sort {s}?"), "Can you sort 5391?");
  auto add = *MakeTask("add");
  EXPECT_EQ(*Paraphrase(*add, "37+45=", "What is {a} plus {b}?"), "What is 37 plus 45?");
  auto kv = *MakeTask("kv");
  EXPECT_EQ(*Paraphrase(*kv, "a=3;b=5;c=1 b?", "Given {pairs}, what is {q}?"), "Given a=3, b=5, c=1, what is b?");
  auto caesar = *MakeTask("caesar");
  EXPECT_EQ(*Paraphrase(*caesar, "rot3 abc=", "Shift {s} by {n} letters"), "Shift abc by 3 letters");
}

TEST(ParaphraseTest, BadPromptOrTemplateIsRejectedWithTheReason) {
  auto rev = *MakeTask("reverse");
  auto s = Paraphrase(*rev, "sort 123=", "Reverse {s}");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("'reverse'"), std::string::npos) << s.status();
  s = Paraphrase(*rev, "rev abc=", "Reverse {a}");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("{a}"), std::string::npos) << s.status();
  s = Paraphrase(*rev, "rev abc=", "Reverse {s");
  EXPECT_NE(s.status().message().find("unclosed"), std::string::npos) << s.status();
  EXPECT_EQ(ParaphraseTemplates("nosuch").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParaphraseTest, GeneratedParaphrasesAreDeterministicAndStateTheirProblem) {
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = *MakeTask(name);
    auto all = *ParaphraseTemplates(name);
    for (TemplateSplit split : {TemplateSplit::kTrain, TemplateSplit::kHeldOut}) {
      auto a = GenerateParaphrases(*task, TaskSplit::kHeldOut, split, 60, 9);
      auto b = GenerateParaphrases(*task, TaskSplit::kHeldOut, split, 60, 9);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status();
      ASSERT_EQ(a->size(), 60u);
      std::set<int> used;
      for (size_t i = 0; i < a->size(); ++i) {
        const ParaphrasedExample& p = (*a)[i];
        EXPECT_EQ(p.text, (*b)[i].text);
        EXPECT_EQ((p.template_index % 4 == 3), split == TemplateSplit::kHeldOut) << p.template_index;
        used.insert(p.template_index);
        // The problem stated is still the canonical one: the verifier accepts its answer ...
        EXPECT_TRUE(task->Verify(p.canonical.prompt, p.canonical.response)) << p.canonical.prompt;
        EXPECT_EQ(SplitOfPrompt(p.canonical.prompt), TaskSplit::kHeldOut);
        // ... and the paraphrase is that template filled with the prompt's fields.
        EXPECT_EQ(*Paraphrase(*task, p.canonical.prompt, all[static_cast<size_t>(p.template_index)]), p.text);
        EXPECT_NE(p.text, p.canonical.prompt);
      }
      EXPECT_GE(used.size(), 2u) << "templates of the split are all used";
    }
    auto c = GenerateParaphrases(*task, TaskSplit::kHeldOut, TemplateSplit::kTrain, 60, 10);
    auto d = GenerateParaphrases(*task, TaskSplit::kHeldOut, TemplateSplit::kTrain, 60, 9);
    ASSERT_TRUE(c.ok() && d.ok());
    int same = 0;
    for (size_t i = 0; i < c->size(); ++i) same += (*c)[i].text == (*d)[i].text;
    EXPECT_LT(same, 30) << "another seed gives other paraphrases";
  }
}

TEST(ParaphraseTest, GeneralPromptSplitsShareNoPrompt) {
  const int64_t nt = NumGeneralPrompts(TemplateSplit::kTrain), nh = NumGeneralPrompts(TemplateSplit::kHeldOut);
  EXPECT_GE(nt, 50);
  EXPECT_GE(nh, 20);
  auto train = GeneralPrompts(TemplateSplit::kTrain, nt, 1);
  auto held = GeneralPrompts(TemplateSplit::kHeldOut, nh + 100, 1);  // capped
  EXPECT_EQ(static_cast<int64_t>(held.size()), nh);
  std::set<std::string> t(train.begin(), train.end());
  EXPECT_EQ(static_cast<int64_t>(t.size()), nt);
  for (const std::string& h : held) EXPECT_EQ(t.count(h), 0u) << h;
  EXPECT_EQ(GeneralPrompts(TemplateSplit::kTrain, 10, 3), GeneralPrompts(TemplateSplit::kTrain, 10, 3));
  EXPECT_NE(GeneralPrompts(TemplateSplit::kTrain, 10, 3), GeneralPrompts(TemplateSplit::kTrain, 10, 4));
  // No held-out general prompt reuses a training topic: "Tell me about X." with X from the held-out ones.
  for (const std::string& h : held) EXPECT_EQ(h.find("the sea"), std::string::npos);
}

}  // namespace
}  // namespace skillpack
