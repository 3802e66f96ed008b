#include "trainer/tasks/task.h"

#include <set>

#include <gtest/gtest.h>

namespace skillpack {
namespace {

TEST(TasksTest, EveryTaskSolvesVerifiesAndRejectsItsOwnSamples) {
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = MakeTask(name);
    ASSERT_TRUE(task.ok()) << task.status();
    std::mt19937_64 rng(5);
    for (int i = 0; i < 300; ++i) {
      TaskExample ex = (*task)->Sample(rng);
      ASSERT_LE(ex.prompt.size(), 20u) << ex.prompt;
      ASSERT_LE(static_cast<int32_t>(ex.response.size()), (*task)->max_response_bytes()) << ex.prompt;
      auto solved = (*task)->Solve(ex.prompt);
      ASSERT_TRUE(solved.ok()) << solved.status();
      EXPECT_EQ(*solved, ex.response) << ex.prompt;
      EXPECT_TRUE((*task)->Verify(ex.prompt, ex.response));
      const std::string wrong = (*task)->WrongResponse(ex.prompt, rng);
      EXPECT_NE(wrong, ex.response) << ex.prompt;
      EXPECT_FALSE((*task)->Verify(ex.prompt, wrong)) << ex.prompt;
      // Exact match: no trailing space or newline tolerated.
      EXPECT_FALSE((*task)->Verify(ex.prompt, ex.response + " "));
    }
  }
}

TEST(TasksTest, KnownAnswers) {
  auto add = *MakeTask("add");
  EXPECT_EQ(*add->Solve("12+7="), "19");
  EXPECT_EQ(*add->Solve("99+99="), "198");
  auto rev = *MakeTask("reverse");
  EXPECT_EQ(*rev->Solve("rev abcd="), "dcba");
  auto sort = *MakeTask("sort");
  EXPECT_EQ(*sort->Solve("sort 5391="), "1359");
  auto kv = *MakeTask("kv");
  EXPECT_EQ(*kv->Solve("a=3;b=5;c=1 b?"), "5");
  EXPECT_EQ(*kv->Solve("q=0;z=9;m=4;k=2 k?"), "2");
  auto caesar = *MakeTask("caesar");
  EXPECT_EQ(*caesar->Solve("rot3 abc="), "def");
  EXPECT_EQ(*caesar->Solve("rot2 xyz="), "zab");
}

TEST(TasksTest, MalformedPromptsAreRejectedWithTheTaskNamed) {
  auto add = *MakeTask("add");
  for (const char* p : {"", "12+7", "+7=", "123+1=", "07+1=", "a+b=", "12-7="}) {
    auto s = add->Solve(p);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << p;
    EXPECT_NE(s.status().message().find("'add'"), std::string::npos);
    EXPECT_FALSE(add->Verify(p, "19"));
  }
  auto kv = *MakeTask("kv");
  for (const char* p : {"a=3;b=5 c?", "a=3;a=5 a?", "a=3;b=5b?", "A=3;b=5 b?", "a=3,b=5 b?"}) {
    EXPECT_FALSE(kv->Solve(p).ok()) << p;
  }
  auto rev = *MakeTask("reverse");
  EXPECT_FALSE(rev->Solve("rev ab=").ok());
  EXPECT_FALSE(rev->Solve("rev abcdefg=").ok());
  EXPECT_FALSE(rev->Solve("rev ABC=").ok());
  auto caesar = *MakeTask("caesar");
  EXPECT_FALSE(caesar->Solve("rot9 abc=").ok());
  EXPECT_FALSE(caesar->Solve("rot3abc=").ok());
}

TEST(TasksTest, UnknownTaskNamesTheKnownOnes) {
  auto t = MakeTask("division");
  ASSERT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("division"), std::string::npos);
  EXPECT_NE(t.status().message().find("reverse"), std::string::npos);
}

TEST(TasksTest, SplitsAreDisjointDeterministicAndSeeded) {
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = *MakeTask(name);
    auto train = GenerateTaskExamples(*task, TaskSplit::kTrain, 2000, 1, false);
    auto held = GenerateTaskExamples(*task, TaskSplit::kHeldOut, 100, 2, true);
    ASSERT_TRUE(train.ok() && held.ok());
    std::set<std::string> train_prompts, held_prompts;
    for (const auto& e : *train) {
      EXPECT_EQ(SplitOfPrompt(e.prompt), TaskSplit::kTrain);
      train_prompts.insert(e.prompt);
    }
    for (const auto& e : *held) held_prompts.insert(e.prompt);
    EXPECT_EQ(held_prompts.size(), 100u);  // unique
    for (const auto& p : held_prompts) EXPECT_EQ(train_prompts.count(p), 0u) << p;
    auto again = *GenerateTaskExamples(*task, TaskSplit::kTrain, 2000, 1, false);
    ASSERT_EQ(again.size(), train->size());
    for (size_t i = 0; i < again.size(); ++i) EXPECT_EQ(again[i].prompt, (*train)[i].prompt);
    auto other = *GenerateTaskExamples(*task, TaskSplit::kTrain, 50, 3, false);
    int same = 0;
    for (size_t i = 0; i < other.size(); ++i) same += other[i].prompt == (*train)[i].prompt;
    EXPECT_LT(same, 10);
  }
}

TEST(TasksTest, HeldOutIsAboutATenthOfTheSpace) {
  auto task = *MakeTask("add");
  int held = 0;
  for (int a = 0; a < 100; ++a) {
    for (int b = 0; b < 100; ++b) {
      held += SplitOfPrompt(absl::StrCat(a, "+", b, "=")) == TaskSplit::kHeldOut;
    }
  }
  EXPECT_GT(held, 800);
  EXPECT_LT(held, 1200);
  // Asking for more unique held-out problems than exist is an error, not a hang.
  auto too_many = GenerateTaskExamples(*task, TaskSplit::kHeldOut, held + 1, 1, true);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GenerateTaskExamples(*task, TaskSplit::kTrain, -1, 1, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TasksTest, PreferencesPairARightAndAWrongAnswer) {
  auto task = *MakeTask("reverse");
  auto prefs = GenerateTaskPreferences(*task, TaskSplit::kTrain, 50, 4, false);
  ASSERT_TRUE(prefs.ok());
  for (const auto& p : *prefs) {
    EXPECT_TRUE(task->Verify(p.prompt, p.chosen));
    EXPECT_FALSE(task->Verify(p.prompt, p.rejected));
  }
  EXPECT_EQ(*TaskSplitFromName("held_out"), TaskSplit::kHeldOut);
  EXPECT_FALSE(TaskSplitFromName("test").ok());
}

TEST(TasksTest, ExamplesWithMistakesAnswerWrongAboutTheirShare) {
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = *MakeTask(name);
    auto right = GenerateTaskExamples(*task, TaskSplit::kTrain, 2000, 9, false);
    ASSERT_TRUE(right.ok());
    // Share 0: GenerateTaskExamples's examples.
    auto none = GenerateTaskExamplesWithMistakes(*task, TaskSplit::kTrain, 2000, 9, 0.0);
    ASSERT_TRUE(none.ok()) << none.status();
    ASSERT_EQ(none->size(), right->size());
    for (size_t i = 0; i < right->size(); ++i) EXPECT_EQ((*none)[i].response, (*right)[i].response);
    // Share 0.3: the same prompts; a wrong answer where the response differs,
    // the right one elsewhere; 600 ± 4 standard deviations (20.5) wrong.
    auto some = GenerateTaskExamplesWithMistakes(*task, TaskSplit::kTrain, 2000, 9, 0.3);
    ASSERT_TRUE(some.ok());
    int64_t wrong = 0;
    for (size_t i = 0; i < right->size(); ++i) {
      const TaskExample& e = (*some)[i];
      ASSERT_EQ(e.prompt, (*right)[i].prompt);
      const bool ok = task->Verify(e.prompt, e.response);
      EXPECT_EQ(ok, e.response == (*right)[i].response) << e.prompt << " -> " << e.response;
      wrong += !ok;
    }
    EXPECT_NEAR(static_cast<double>(wrong), 600.0, 82.0);
    auto again = GenerateTaskExamplesWithMistakes(*task, TaskSplit::kTrain, 2000, 9, 0.3);
    for (size_t i = 0; i < right->size(); ++i) EXPECT_EQ((*again)[i].response, (*some)[i].response);
    auto all = GenerateTaskExamplesWithMistakes(*task, TaskSplit::kTrain, 100, 9, 1.0);
    for (const TaskExample& e : *all) EXPECT_FALSE(task->Verify(e.prompt, e.response)) << e.prompt;
  }
  auto task = *MakeTask("reverse");
  EXPECT_EQ(GenerateTaskExamplesWithMistakes(*task, TaskSplit::kTrain, 10, 9, 1.5).status().message(),
            "wrong_share must be in [0, 1], got 1.5");
}

}  // namespace
}  // namespace skillpack
