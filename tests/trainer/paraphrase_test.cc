#include "trainer/tasks/paraphrase.h"

#include <algorithm>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "absl/strings/ascii.h"

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
        EXPECT_EQ(p.template_index < static_cast<int>(kFirstExtraTemplate) && p.template_index % 4 == 3,
                  split == TemplateSplit::kHeldOut)
            << p.template_index;
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

// The extra templates widen the router's training phrasings; the held-out
// ones stay exactly the first eight's indices 3 and 7, and no training
// template (original or extra) borrows a held-out template's wording.
TEST(ParaphraseTest, ExtraTemplatesAreTrainingOnlyAndAvoidHeldOutWording) {
  const std::vector<std::string> held_out_words = {"backwards", "last letter", "ascending",    "low to high", "total",
                                                   "added to",  "tell me",     "stored under", "forward",     "places"};
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto all = *ParaphraseTemplates(name);
    auto held = *ParaphraseTemplates(name, TemplateSplit::kHeldOut);
    auto train = *ParaphraseTemplates(name, TemplateSplit::kTrain);
    ASSERT_GT(all.size(), kFirstExtraTemplate) << "every task has extra training templates";
    EXPECT_EQ(held, (std::vector<std::string>{all[3], all[7]}));
    for (const std::string& t : train) {
      for (const std::string& w : held_out_words) {
        EXPECT_EQ(absl::AsciiStrToLower(t).find(w), std::string::npos)
            << "training template \"" << t << "\" uses \"" << w << "\"";
      }
    }
    auto task = *MakeTask(name);
    // Without extras only the first eight's training templates are drawn; with them, extras too.
    auto base = *GenerateParaphrases(*task, TaskSplit::kTrain, TemplateSplit::kTrain, 200, 4, false);
    auto wide = *GenerateParaphrases(*task, TaskSplit::kTrain, TemplateSplit::kTrain, 200, 4, true);
    bool any_extra = false;
    for (const auto& p : base) EXPECT_LT(p.template_index, static_cast<int>(kFirstExtraTemplate));
    for (const auto& p : wide) {
      any_extra |= p.template_index >= static_cast<int>(kFirstExtraTemplate);
      EXPECT_FALSE(p.template_index == 3 || p.template_index == 7);
    }
    EXPECT_TRUE(any_extra);
  }
}

TEST(ParaphraseTest, GeneralPromptsWithPartsNameTheirOpenerAndTopic) {
  auto with = GeneralPromptsWithParts(TemplateSplit::kTrain, 40, 6);
  auto plain = GeneralPrompts(TemplateSplit::kTrain, 40, 6);
  ASSERT_EQ(with.size(), plain.size());
  std::map<int, std::string> first_word;
  std::map<std::pair<int, int>, std::string> by_parts;
  std::set<int> topics;
  for (size_t i = 0; i < with.size(); ++i) {
    EXPECT_EQ(with[i].text, plain[i]);
    // Every prompt of one opener starts with the same word.
    const std::string w = plain[i].substr(0, plain[i].find(' '));
    auto [it, inserted] = first_word.emplace(with[i].opener, w);
    EXPECT_EQ(it->second, w) << plain[i];
    // An (opener, topic) pair names one prompt.
    EXPECT_TRUE(by_parts.emplace(std::make_pair(with[i].opener, with[i].topic), plain[i]).second) << plain[i];
    topics.insert(with[i].topic);
  }
  EXPECT_GE(first_word.size(), 4u);
  EXPECT_GE(topics.size(), 4u);
  // All of a split: every (opener, topic) pair exactly once, and one topic's
  // prompts across openers are as many as there are openers.
  for (TemplateSplit split : {TemplateSplit::kTrain, TemplateSplit::kHeldOut}) {
    auto all = GeneralPromptsWithParts(split, NumGeneralPrompts(split), 1);
    std::set<std::pair<int, int>> pairs;
    std::map<int, int> per_topic;
    std::set<int> openers;
    for (const GeneralPrompt& p : all) {
      EXPECT_TRUE(pairs.insert({p.opener, p.topic}).second) << p.text;
      ++per_topic[p.topic];
      openers.insert(p.opener);
    }
    EXPECT_EQ(static_cast<int64_t>(pairs.size()), NumGeneralPrompts(split));
    EXPECT_EQ(static_cast<int64_t>(openers.size() * per_topic.size()), NumGeneralPrompts(split));
    for (auto& [topic, n] : per_topic) EXPECT_EQ(n, static_cast<int>(openers.size())) << "topic " << topic;
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

TEST(ParaphraseTest, ExtraGeneralPromptsWidenOnlyTheTrainingSplit) {
  const int64_t plain = NumGeneralPrompts(TemplateSplit::kTrain);
  const int64_t wide = NumGeneralPrompts(TemplateSplit::kTrain, true);
  EXPECT_EQ(plain, 8 * 12);
  EXPECT_EQ(wide, 24 * 44);
  EXPECT_EQ(NumGeneralPrompts(TemplateSplit::kHeldOut, true), NumGeneralPrompts(TemplateSplit::kHeldOut));
  // Without extras the draw is what it always was; with them, the base
  // prompts are all still there, among many more.
  EXPECT_EQ(GeneralPrompts(TemplateSplit::kTrain, 40, 6, false), GeneralPrompts(TemplateSplit::kTrain, 40, 6));
  auto all_plain = GeneralPrompts(TemplateSplit::kTrain, plain, 1);
  auto all_wide = GeneralPromptsWithParts(TemplateSplit::kTrain, wide, 1, true);
  std::set<std::string> wide_texts;
  for (const GeneralPrompt& p : all_wide) wide_texts.insert(p.text);
  EXPECT_EQ(static_cast<int64_t>(wide_texts.size()), wide);
  for (const std::string& p : all_plain) EXPECT_EQ(wide_texts.count(p), 1u) << p;
  // No training prompt, extras included, uses a held-out opener's or topic's words.
  const std::vector<std::string> held_out_words = {"summarise", "ideas",   "curious", "works",  "share",    " story",
                                                   "involving", "compose", "haiku",   "volcan", "rome",     "jazz",
                                                   "electric",  " car",    "bee",     "honey",  "mountain", "climb"};
  auto held = GeneralPrompts(TemplateSplit::kHeldOut, NumGeneralPrompts(TemplateSplit::kHeldOut), 1);
  for (const std::string& w : held_out_words) {
    bool in_held_out = false;
    for (const std::string& h : held) in_held_out |= absl::AsciiStrToLower(h).find(w) != std::string::npos;
    EXPECT_TRUE(in_held_out) << "\"" << w << "\" is not a held-out word";
    for (const std::string& t : wide_texts) {
      EXPECT_EQ(absl::AsciiStrToLower(t).find(w), std::string::npos)
          << "training prompt \"" << t << "\" uses \"" << w << "\"";
    }
  }
  // The extra openers' indices follow the eight base ones', the topics' the twelve.
  int max_opener = 0, max_topic = 0;
  for (const GeneralPrompt& p : all_wide)
    max_opener = std::max(max_opener, p.opener), max_topic = std::max(max_topic, p.topic);
  EXPECT_EQ(max_opener, 23);
  EXPECT_EQ(max_topic, 43);
}

// The fresh held-out sets: never among the templates a router trains on, and
// sharing no template, general opener or topic with any other split.
TEST(ParaphraseTest, FreshSetsAreNeverTrainedOnAndShareNothingWithTheOtherSplits) {
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh), "fresh");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh2), "fresh2");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh3), "fresh3");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh4), "fresh4");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh5), "fresh5");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh6), "fresh6");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh7), "fresh7");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh8), "fresh8");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh9), "fresh9");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh10), "fresh10");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh11), "fresh11");
  EXPECT_STREQ(TemplateSplitName(TemplateSplit::kFresh12), "fresh12");
  const std::vector<TemplateSplit> fresh_splits = {
      TemplateSplit::kFresh,  TemplateSplit::kFresh2,  TemplateSplit::kFresh3,  TemplateSplit::kFresh4,
      TemplateSplit::kFresh5, TemplateSplit::kFresh6,  TemplateSplit::kFresh7,  TemplateSplit::kFresh8,
      TemplateSplit::kFresh9, TemplateSplit::kFresh10, TemplateSplit::kFresh11, TemplateSplit::kFresh12};
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = *MakeTask(name);
    auto all = *ParaphraseTemplates(name);
    for (TemplateSplit split : fresh_splits) {
      SCOPED_TRACE(TemplateSplitName(split));
      auto fresh = ParaphraseTemplates(name, split);
      ASSERT_TRUE(fresh.ok()) << fresh.status();
      EXPECT_GE(fresh->size(), 4u);
      // The other splits' templates, lowercased: every one of ParaphraseTemplates(name), and the other fresh sets'.
      std::set<std::string> others;
      for (const std::string& o : all) others.insert(absl::AsciiStrToLower(o));
      for (TemplateSplit other : fresh_splits) {
        if (other == split) continue;
        auto o = *ParaphraseTemplates(name, other);
        for (const std::string& t : o) others.insert(absl::AsciiStrToLower(t));
      }
      std::set<std::string> fresh_set(fresh->begin(), fresh->end());
      EXPECT_EQ(fresh_set.size(), fresh->size());
      for (const std::string& f : *fresh) EXPECT_EQ(others.count(absl::AsciiStrToLower(f)), 0u) << f;
      auto a = GenerateParaphrases(*task, TaskSplit::kHeldOut, split, 80, 9);
      auto b = GenerateParaphrases(*task, TaskSplit::kHeldOut, split, 80, 9);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status();
      std::set<int> used;
      for (size_t i = 0; i < a->size(); ++i) {
        const ParaphrasedExample& p = (*a)[i];
        EXPECT_EQ(p.text, (*b)[i].text);
        ASSERT_GE(p.template_index, 0);
        ASSERT_LT(p.template_index, static_cast<int>(fresh->size()));
        used.insert(p.template_index);
        EXPECT_TRUE(task->Verify(p.canonical.prompt, p.canonical.response)) << p.canonical.prompt;
        EXPECT_EQ(*Paraphrase(*task, p.canonical.prompt, (*fresh)[static_cast<size_t>(p.template_index)]), p.text);
      }
      EXPECT_EQ(used.size(), fresh->size()) << "every fresh template is drawn";
      // What a router trains on (extras included) comes from the other list only.
      auto trained = GenerateParaphrases(*task, TaskSplit::kTrain, TemplateSplit::kTrain, 300, 4, true);
      ASSERT_TRUE(trained.ok()) << trained.status();
      for (const ParaphrasedExample& p : *trained) {
        EXPECT_EQ(fresh_set.count(all[static_cast<size_t>(p.template_index)]), 0u);
      }
    }
  }
  for (TemplateSplit split : fresh_splits) {
    EXPECT_EQ(ParaphraseTemplates("nosuch", split).status().code(), absl::StatusCode::kInvalidArgument);
  }

  // Words of every fresh opener and topic, per set: each in some prompt of
  // its set, in no prompt of another split (training extras included).
  const std::map<TemplateSplit, std::vector<std::string>> fresh_words = {
      {TemplateSplit::kFresh,
       {"to a friend", "limerick", "interesting questions", "quick introduction", "writing a report", "opinion",
        "great wall", "penguin", "origami", "renewable", "renaissance", "submarine", "coral", "crossword"}},
      {TemplateSplit::kFresh2,
       {"activities", "related to", "tips", "song", "changed over the years", "best way", "get into", "joke",
        "sunflower", "lighthouse", "skateboard", "silk road", "octopus", "thunderstorm", "hot air balloon",
        "byzantine"}},
      {TemplateSplit::kFresh3,
       {"bedtime story", "misconceptions", "five-minute talk", "documentary", "little-known", "quiz", "glacier",
        "pyramids", "giza", "meditation", "hedgehog", "apollo", "firefl", "marathon", "northern lights"}},
      {TemplateSplit::kFresh4,
       {"like i'm five", "tweet", "trivia", "reading list", "fascinating", "timeline", "eiffel", "tornado", "turtle",
        "yoga", "viking", "kite", "amazon", "board game"}},
      {TemplateSplit::kFresh5,
       {"riddle", "bullet point", "museum", "conversation starter", "dialogue", "speech", "taj mahal", "owls",
        "sourdough", "titanic", "comet", "wolves", "stonehenge", "hockey"}},
      {TemplateSplit::kFresh6,
       {"podcast", "nephew", "birthday", "movie plot", "the deal with", "study guide", "tour guide", "walk me through",
        "jellyfish", "statue of liberty", "pottery", "wright brothers", "cheese", "loch ness", "sloth", "surfing"}},
      {TemplateSplit::kFresh7,
       {"newspaper headline", "best known for", "scrapbook", "grandma", "rundown", "flashcards", "rap lyrics", "bamboo",
        "chameleon", "mona lisa", "hurricane", "tulip", "bagpipe", "pompeii", "roller coaster"}},
      {TemplateSplit::kFresh8,
       {"sonnet", "lullaby", "daughter", "weird", "newsletter", "discussion questions", "book club", "geyser",
        "hummingbird", "sahara", "sea otter", "koala", "barrier reef", "maple syrup", "redwood"}},
      {TemplateSplit::kFresh9,
       {"travel blog", "intro paragraph", "picture book", "history behind", "slogan", "presentation", "slides",
        "three sentences", "flamingo", "grand canyon", "bonsai", "panama canal", "rainbow", "machu picchu", "narwhal",
        "fireworks"}},
      {TemplateSplit::kFresh10,
       {"instagram caption", "debate", "postcard", "grandpa", "plain english", "outline", "convince", "tide pool",
        "hoover dam", "platypus", "sistine chapel", "glassblowing", "axolotl", "cherry blossom", "trans-siberian"}},
      {TemplateSplit::kFresh11,
       {"email", "coworker", "halloween costume", "craft project", "inspired by", "weekend trip", "pack", "novels",
        "elevator pitch", "puffin", "golden gate", "calligraphy", "hot spring", "manatee", "leaning tower", "pisa",
        "lavender", "pumpkin"}},
      {TemplateSplit::kFresh12,
       {"text message", "mom", "dinner", "bring up", "teaching", "structure", "wikipedia", "day out", "centered",
        "motivational", "quote", "colosseum", "beaver", "stained glass", "peacock", "dead sea", "rushmore", "jigsaw",
        "berlin wall"}},
  };
  for (TemplateSplit split : fresh_splits) {
    SCOPED_TRACE(TemplateSplitName(split));
    const int64_t n = NumGeneralPrompts(split);
    EXPECT_EQ(n, 6 * 8);
    EXPECT_EQ(NumGeneralPrompts(split, true), n);
    auto fresh = GeneralPrompts(split, n, 1);
    std::set<std::string> fresh_set(fresh.begin(), fresh.end());
    EXPECT_EQ(static_cast<int64_t>(fresh_set.size()), n);
    std::vector<std::string> others =
        GeneralPrompts(TemplateSplit::kTrain, NumGeneralPrompts(TemplateSplit::kTrain, true), 1, true);
    for (TemplateSplit other : kHeldOutTemplateSplits) {
      if (other == split) continue;
      for (const std::string& h : GeneralPrompts(other, NumGeneralPrompts(other), 1)) others.push_back(h);
    }
    for (const std::string& w : fresh_words.at(split)) {
      bool in_fresh = false;
      for (const std::string& f : fresh) in_fresh |= absl::AsciiStrToLower(f).find(w) != std::string::npos;
      EXPECT_TRUE(in_fresh) << "\"" << w << "\" is not a word of this set";
      for (const std::string& o : others) {
        EXPECT_EQ(absl::AsciiStrToLower(o).find(w), std::string::npos) << "prompt \"" << o << "\" uses \"" << w << "\"";
      }
    }
  }
}

}  // namespace
}  // namespace skillpack
