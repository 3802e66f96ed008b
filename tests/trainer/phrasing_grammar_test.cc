#include "trainer/tasks/phrasing_grammar.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "absl/strings/ascii.h"

namespace skillpack {
namespace {

// One canonical problem per task, to fill templates with.
std::map<std::string, std::string> CanonicalPrompts() {
  return {{"add", "37+45="},
          {"reverse", "rev abcd="},
          {"sort", "sort 5391="},
          {"kv", "a=3;b=5 b?"},
          {"caesar", "rot3 abc="}};
}

TEST(PhrasingGrammarTest, EveryComposedTemplateFillsAndNoneIsAHeldOutTemplate) {
  const std::map<std::string, std::string> canonical = CanonicalPrompts();
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

TEST(PhrasingGrammarTest, ComposedGeneralPromptsOverGivenTopics) {
  // The training topics given explicitly draw exactly the default prompts.
  const std::vector<GeneralPrompt> def = ComposedGeneralPrompts(300, 7);
  const std::vector<GeneralPrompt> same = ComposedGeneralPrompts(300, 7, GeneralTopics(TemplateSplit::kTrain, true));
  ASSERT_EQ(def.size(), same.size());
  for (size_t i = 0; i < def.size(); ++i) {
    EXPECT_EQ(def[i].text, same[i].text);
    EXPECT_EQ(def[i].topic, same[i].topic);
  }
  const std::vector<std::string> topics = {"lighthouses", "marmalade", "tugboats"};
  const std::vector<GeneralPrompt> g = ComposedGeneralPrompts(200, 7, topics);
  ASSERT_EQ(g.size(), 200u);
  std::set<int> used;
  for (const GeneralPrompt& p : g) {
    ASSERT_GE(p.topic, 0);
    ASSERT_LT(p.topic, 3);
    EXPECT_NE(p.text.find(topics[static_cast<size_t>(p.topic)]), std::string::npos) << p.text;
    used.insert(p.topic);
  }
  EXPECT_EQ(used.size(), 3u);
  EXPECT_TRUE(ComposedGeneralPrompts(10, 7, {}).empty());
}

// Every word (letters only, lower case) of `text`.
std::set<std::string> Words(const std::string& text) {
  std::set<std::string> out;
  std::string w;
  for (char c : text + " ") {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      w += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!w.empty()) {
      out.insert(w);
      w.clear();
    }
  }
  return out;
}

// Every word of every held-out split's general prompts and templates.
std::set<std::string> HeldOutWords() {
  std::set<std::string> held_out;
  for (TemplateSplit split : kHeldOutTemplateSplits) {
    for (const std::string& g : GeneralPrompts(split, NumGeneralPrompts(split), 1)) {
      for (const std::string& w : Words(g)) held_out.insert(w);
    }
    for (const std::string& name : TaskNames()) {
      auto templates = ParaphraseTemplates(name, split);
      if (!templates.ok()) continue;
      for (const std::string& t : *templates) {
        for (const std::string& w : Words(t)) held_out.insert(w);
      }
    }
  }
  return held_out;
}

TEST(PhrasingGrammarTest, CorpusTopicWordsKeepFrequentLowerCaseWordsOnly) {
  const std::string text =
      "The lantern glowed. A lantern, a lantern! Kettles whistle; kettles kettles kettles.\n"
      "Zebra Zebra Zebra (capitalised: never). isn't isn't isn't (a contraction). cat cat cat (too short).\n"
      "extraordinarily extraordinarily extraordinarily (13 letters). once once once (a function word).\n"
      "twice twice (only two). backwards backwards backwards (a task's word). "
      "digit digit digit (a task's word, singular).";
  const std::vector<std::string> words = CorpusTopicWords({text}, 100, 1);
  EXPECT_EQ(std::set<std::string>(words.begin(), words.end()), (std::set<std::string>{"kettles", "lantern"}));
  // Split across texts, counted together.
  EXPECT_EQ(CorpusTopicWords({"lantern lantern", "lantern"}, 100, 1), std::vector<std::string>{"lantern"});
  EXPECT_TRUE(CorpusTopicWords({}, 100, 1).empty());
}

TEST(PhrasingGrammarTest, CorpusTopicWordsNeverAHeldOutWordAndSeeded) {
  // A corpus made of every held-out split's general prompts and templates,
  // each word written three times, with plural and singular forms: none is
  // a topic word, while words of no split are.
  std::string corpus;
  const std::set<std::string> held_out = HeldOutWords();
  ASSERT_GE(held_out.size(), 100u);
  for (const std::string& w : held_out) {
    for (const std::string& form : {w, w + "s", w.back() == 's' ? w.substr(0, w.size() - 1) : w}) {
      corpus += form + " " + form + " " + form + "\n";
    }
  }
  const std::vector<std::string> fillers = {"marmalade", "tugboat", "quarry", "saddle", "thimble"};
  for (const std::string& f : fillers) corpus += f + " " + f + " " + f + "\n";
  const std::vector<std::string> all = CorpusTopicWords({corpus}, 1000, 4);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()), std::set<std::string>(fillers.begin(), fillers.end()));
  // Seeded order, n a prefix of the same draw.
  EXPECT_EQ(CorpusTopicWords({corpus}, 1000, 4), all);
  const std::vector<std::string> three = CorpusTopicWords({corpus}, 3, 4);
  EXPECT_EQ(three, std::vector<std::string>(all.begin(), all.begin() + 3));
  bool other_order = false;
  for (uint64_t seed = 5; seed < 15 && !other_order; ++seed)
    other_order = CorpusTopicWords({corpus}, 1000, seed) != all;
  EXPECT_TRUE(other_order);
}

TEST(PhrasingGrammarTest, MadeUpTopicWordsAreDistinctInventedAndNeverAHeldOutWord) {
  // A large draw: its 3-letter salads alone cover a tenth of all 3-letter
  // strings, so held-out words such as "the" or "sum" would be drawn were
  // they not left out.
  const std::vector<std::string> words = MadeUpTopicWords(20000, 3);
  ASSERT_EQ(words.size(), 20000u);
  EXPECT_EQ(std::set<std::string>(words.begin(), words.end()).size(), words.size());
  const std::set<std::string> held_out = HeldOutWords();
  ASSERT_TRUE(held_out.count("the") && held_out.count("sum")) << "the check below would be empty";
  int salads = 0, long_words = 0, three = 0;
  for (const std::string& w : words) {
    ASSERT_GE(w.size(), 3u) << w;
    ASSERT_LE(w.size(), 12u) << w;
    ASSERT_TRUE(std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; })) << w;
    EXPECT_EQ(held_out.count(w), 0u) << w;
    salads += w.find_first_of("aeiou") == std::string::npos;  // a syllable always has a vowel
    long_words += w.size() > 8;                               // a salad never has more than 8 letters
    three += w.size() == 3;
  }
  // Both kinds, about half each: salads without a vowel are (21/26)^len of
  // them, pronounceable words of more than 8 letters most of theirs.
  EXPECT_GT(salads, 1000);
  EXPECT_GT(long_words, 2000);
  EXPECT_GT(three, 1000);
  // Seeded: the same draw again, a shorter draw its prefix, another seed another draw.
  EXPECT_EQ(MadeUpTopicWords(20000, 3), words);
  EXPECT_EQ(MadeUpTopicWords(50, 3), std::vector<std::string>(words.begin(), words.begin() + 50));
  EXPECT_NE(MadeUpTopicWords(50, 4), MadeUpTopicWords(50, 3));
  EXPECT_TRUE(MadeUpTopicWords(0, 3).empty());
  EXPECT_TRUE(MadeUpTopicWords(-5, 3).empty());
}

TEST(PhrasingGrammarTest, ContextTemplatesFillAndNoneIsAHeldOutTemplate) {
  const std::map<std::string, std::string> canonical = CanonicalPrompts();
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = *MakeTask(name);
    auto contexts = ComposedTemplates(name, true);
    auto plain = ComposedTemplates(name);
    ASSERT_TRUE(contexts.ok() && plain.ok()) << contexts.status();
    // The task's cores and at least four situated ones, each in at least ten
    // context frames; every template distinct and none a plain composed one.
    ASSERT_GE(NumPhrasingCores(name, true), NumPhrasingCores(name) + 4);
    EXPECT_GE(contexts->size(), 10u * static_cast<size_t>(NumPhrasingCores(name, true)));
    EXPECT_EQ(std::set<std::string>(contexts->begin(), contexts->end()).size(), contexts->size());
    const std::set<std::string> plain_set(plain->begin(), plain->end());
    const std::set<std::string> held_out = [&] {
      std::set<std::string> out;
      for (TemplateSplit split : kHeldOutTemplateSplits) {
        const std::vector<std::string> templates = *ParaphraseTemplates(name, split);
        for (const std::string& h : templates) out.insert(NormalizedPhrasing(h));
      }
      return out;
    }();
    for (const std::string& t : *contexts) {
      auto filled = Paraphrase(*task, canonical.at(name), t);
      ASSERT_TRUE(filled.ok()) << t << ": " << filled.status();
      EXPECT_EQ(held_out.count(NormalizedPhrasing(t)), 0u) << "context \"" << t << "\" is a held-out template";
      EXPECT_EQ(plain_set.count(t), 0u) << t;
    }
  }
  // A core in a context frame, a situated core in one; a question core never
  // in an imperative frame.
  auto reverse = *ComposedTemplates("reverse", true);
  const std::set<std::string> all(reverse.begin(), reverse.end());
  for (const char* t : {"I'm working on a puzzle. Reverse {s}.", "I'm checking my homework. What is {s} backwards?",
                        "Just curious, my secret password is {s} backwards, what would that be?",
                        "Good morning! Spell {s} from last letter to first for my word game."}) {
    EXPECT_EQ(all.count(t), 1u) << t;
  }
  EXPECT_EQ(all.count("I'm working on a puzzle. What is {s} backwards."), 0u);
}

TEST(PhrasingGrammarTest, ContextParaphrasesKeepCoreIndicesAndStateTheirProblem) {
  for (const std::string& name : TaskNames()) {
    SCOPED_TRACE(name);
    auto task = *MakeTask(name);
    auto a = GenerateComposedParaphrases(*task, TaskSplit::kTrain, 600, 5, true);
    auto b = GenerateComposedParaphrases(*task, TaskSplit::kTrain, 600, 5, true);
    auto plain = GenerateComposedParaphrases(*task, TaskSplit::kTrain, 600, 5);
    ASSERT_TRUE(a.ok() && b.ok() && plain.ok()) << a.status();
    ASSERT_EQ(a->size(), 600u);
    const std::vector<std::string> plain_templates = *ComposedTemplates(name);
    std::set<int> cores;
    int situated = 0;
    for (size_t i = 0; i < a->size(); ++i) {
      const ParaphrasedExample& p = (*a)[i];
      EXPECT_EQ(p.text, (*b)[i].text);
      EXPECT_NE(p.text, (*plain)[i].text);
      ASSERT_GE(p.template_index, 0);
      ASSERT_LT(p.template_index, NumPhrasingCores(name, true));
      cores.insert(p.template_index);
      situated += p.template_index >= NumPhrasingCores(name);
      EXPECT_TRUE(task->Verify(p.canonical.prompt, p.canonical.response)) << p.canonical.prompt;
      EXPECT_EQ(SplitOfPrompt(p.canonical.prompt), TaskSplit::kTrain);
    }
    EXPECT_EQ(static_cast<int>(cores.size()), NumPhrasingCores(name, true)) << "600 draws use every core";
    EXPECT_GT(situated, 50);
  }
  // A shared core keeps its index: the first core of add ("add {a} and {b}")
  // is index 0 in both.
  auto add = *MakeTask("add");
  const std::vector<ParaphrasedExample> add_contexts =
      *GenerateComposedParaphrases(*add, TaskSplit::kTrain, 300, 9, true);
  for (const ParaphrasedExample& p : add_contexts) {
    if (p.template_index == 0) {
      EXPECT_NE(absl::AsciiStrToLower(p.text).find("add "), std::string::npos) << p.text;
    }
    if (p.text.find("apples") != std::string::npos) {
      EXPECT_GE(p.template_index, NumPhrasingCores("add"));
    }
  }
}

TEST(PhrasingGrammarTest, ContextGeneralPromptsAddKindsOfRequestAndKeepOpenerIndices) {
  const std::vector<std::string> topics = {"lighthouses", "marmalade", "tugboats"};
  const std::vector<GeneralPrompt> a = ComposedGeneralPrompts(800, 7, topics, true);
  const std::vector<GeneralPrompt> b = ComposedGeneralPrompts(800, 7, topics, true);
  const std::vector<GeneralPrompt> plain = ComposedGeneralPrompts(800, 7, topics);
  ASSERT_EQ(a.size(), 800u);
  std::set<int> openers, plain_openers;
  for (const GeneralPrompt& p : plain) plain_openers.insert(p.opener);
  std::set<std::string> plain_texts;
  for (const GeneralPrompt& p : plain) plain_texts.insert(p.text);
  bool tweet = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].text, b[i].text);
    ASSERT_GE(a[i].topic, 0);
    ASSERT_LT(a[i].topic, 3);
    EXPECT_NE(a[i].text.find(topics[static_cast<size_t>(a[i].topic)]), std::string::npos) << a[i].text;
    EXPECT_EQ(plain_texts.count(a[i].text), 0u) << a[i].text;
    openers.insert(a[i].opener);
    tweet |= a[i].text.find("tweet about") != std::string::npos;
    // The training cores keep their indices: opener 0 is "tell me about {t}".
    if (a[i].opener == 0) {
      EXPECT_NE(a[i].text.find("ell me about"), std::string::npos) << a[i].text;
    }
  }
  EXPECT_TRUE(tweet);
  EXPECT_GE(openers.size(), plain_openers.size() + 25);
  EXPECT_TRUE(ComposedGeneralPrompts(10, 7, {}, true).empty());
}

TEST(PhrasingGrammarTest, TaskWithoutCoresIsRejectedWithItsName) {
  auto s = ComposedTemplates("nosuch");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("'nosuch'"), std::string::npos) << s.status();
  EXPECT_EQ(NumPhrasingCores("nosuch"), 0);
}

}  // namespace
}  // namespace skillpack
