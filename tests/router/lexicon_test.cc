#include "router/lexicon.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include <unistd.h>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;

// A small database in WordNet's file format (wndb(5)), offsets computed as
// the real files' are: a synset's offset is the byte where its line starts.
struct FixtureSynset {
  std::string key;
  int pos;  // 0 noun, 1 verb, 2 adj, 3 adv
  std::vector<std::string> words;
  std::vector<std::pair<std::string, std::string>> pointers;  // (symbol, target key)
  std::string gloss;
  std::string tail;  // after the pointers (a verb's frames)
};

const char* const kPos[4] = {"noun", "verb", "adj", "adv"};
const char kPosChar[4] = {'n', 'v', 'a', 'r'};

class LexiconFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/lexicon_test_" + std::to_string(::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    synsets_ = {
        {"reverse1",
         1,
         {"reverse", "turn_back"},
         {},
         "change to the contrary order; \"reverse the list\"",
         " 01 + 08 00"},
        {"reverse2", 1, {"reverse", "revoke"}, {}, "annul a decision", ""},
        {"calculate", 1, {"calculate", "compute"}, {}, "make a mathematical computation", ""},
        {"add", 1, {"add", "total", "sum"}, {{"@", "calculate"}}, "combine numbers; \"add 2 and 3\"", ""},
        {"backwards", 3, {"backwards", "backward"}, {}, "in a manner or order the reverse of normal", ""},
        {"number", 0, {"number"}, {}, "a quantity", ""},
        {"child", 0, {"child", "kid"}, {}, "a young person", ""},
        {"alphabetical", 2, {"alphabetical(a)"}, {}, "arranged in order according to the alphabet", ""},
    };
    WriteAll();
  }

  // data.* first (offsets), then index.* and *.exc.
  void WriteAll() {
    std::map<std::string, uint32_t> offset;
    std::string header = "  1 a fixture in WordNet's format\n";
    auto line = [&](const FixtureSynset& s) {
      std::string l =
          absl::StrFormat("%08u 00 %c %02x", offset.count(s.key) ? offset[s.key] : 0u, kPosChar[s.pos], s.words.size());
      for (const std::string& w : s.words) absl::StrAppend(&l, " ", w, " 0");
      absl::StrAppend(&l, absl::StrFormat(" %03d", s.pointers.size()));
      for (const auto& [symbol, target] : s.pointers) {
        const FixtureSynset* t = nullptr;
        for (const FixtureSynset& c : synsets_) t = c.key == target ? &c : t;
        absl::StrAppend(&l, absl::StrFormat(" %s %08u %c 0000", symbol, offset.count(target) ? offset[target] : 0u,
                                            kPosChar[t->pos]));
      }
      absl::StrAppend(&l, s.tail, " | ", s.gloss, "  \n");
      return l;
    };
    for (int pass = 0; pass < 2; ++pass) {  // the first pass finds the offsets (every field has a fixed width)
      for (int pos = 0; pos < 4; ++pos) {
        std::string data = header;
        for (const FixtureSynset& s : synsets_) {
          if (s.pos != pos) continue;
          offset[s.key] = static_cast<uint32_t>(data.size());
          data += line(s);
        }
        if (pass == 1) Write(absl::StrCat("data.", kPos[pos]), data);
      }
    }
    for (int pos = 0; pos < 4; ++pos) {
      std::map<std::string, std::vector<uint32_t>> lemmas;
      for (const FixtureSynset& s : synsets_) {
        if (s.pos != pos) continue;
        for (std::string w : s.words) lemmas[w.substr(0, w.find('('))].push_back(offset[s.key]);
      }
      std::string index = header;
      for (const auto& [lemma, offs] : lemmas) {
        absl::StrAppend(&index, lemma, " ", std::string(1, kPosChar[pos]), " ", offs.size(), " 1 @ ", offs.size(),
                        " 0");
        for (uint32_t o : offs) absl::StrAppend(&index, absl::StrFormat(" %08u", o));
        index += "  \n";
      }
      Write(absl::StrCat("index.", kPos[pos]), index);
    }
    Write("noun.exc", "children child\n");
    Write("verb.exc", "ran run\n");
    Write("adj.exc", "");
    Write("adv.exc", "");
  }

  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(fs::path(dir_) / name, std::ios::binary) << text;
  }

  std::unique_ptr<Lexicon> Load() {
    auto lex = Lexicon::Load(dir_);
    EXPECT_TRUE(lex.ok()) << lex.status();
    return lex.ok() ? *std::move(lex) : nullptr;
  }

  std::string dir_;
  std::vector<FixtureSynset> synsets_;
};

std::map<std::string, float> AsMap(const std::vector<std::pair<std::string, float>>& v) {
  return std::map<std::string, float>(v.begin(), v.end());
}

TEST(LexiconWordsTest, LettersLowerCasedWithoutFunctionWords) {
  EXPECT_EQ(Lexicon::Words("Please REVERSE the word 'abc', then x! 42x-ray's"),
            (std::vector<std::string>{"reverse", "word", "abc", "ray"}));
  EXPECT_TRUE(Lexicon::Words("the a 123 ?!").empty());
}

TEST(LexiconWordsTest, BucketsAreFnv1aModuloTheBlock) {
  // 64-bit FNV-1a, computed independently (Python) for these strings.
  EXPECT_EQ(LexiconBucket("reverse"), 391);
  EXPECT_EQ(LexiconBucket("sort"), 475);
  EXPECT_EQ(LexiconBucket(""), 387);
}

TEST_F(LexiconFixture, BaseFormsFollowExceptionsAndSuffixRules) {
  auto lex = Load();
  ASSERT_NE(lex, nullptr);
  auto forms = lex->BaseForms("reversed");  // verb rule ed -> e
  EXPECT_EQ(forms[1], std::vector<std::string>{"reverse"});
  EXPECT_TRUE(forms[0].empty() && forms[2].empty() && forms[3].empty());
  EXPECT_EQ(lex->BaseForms("children")[0], std::vector<std::string>{"child"});  // noun.exc
  EXPECT_EQ(lex->BaseForms("numbers")[0], std::vector<std::string>{"number"});
  EXPECT_EQ(lex->BaseForms("backwards")[3], std::vector<std::string>{"backwards"});
  EXPECT_EQ(lex->BaseForms("sums")[1], std::vector<std::string>{"sum"});
  EXPECT_EQ(lex->Canonical("reversing"), "reverse");
  EXPECT_EQ(lex->Canonical("kids"), "kid");
  EXPECT_EQ(lex->Canonical("zebras"), "zebras");  // unknown: unchanged
}

TEST_F(LexiconFixture, TermsWeighSensesWordsDefinitionsAndHypernyms) {
  auto lex = Load();
  ASSERT_NE(lex, nullptr);
  // One sense: add, total, sum, combine, number (from "numbers") 1 each,
  // the hypernym's calculate and compute 1/2 each: 6 in all.
  std::map<std::string, float> total = AsMap(lex->Terms("total"));
  std::map<std::string, float> want = {{"add", 1.f / 6},        {"calculate", 1.f / 12}, {"combine", 1.f / 6},
                                       {"compute", 1.f / 12},   {"number", 1.f / 6},     {"sum", 1.f / 6},
                                       {"total", 1.f + 1.f / 6}};
  ASSERT_EQ(total.size(), want.size());
  for (const auto& [t, w] : want) EXPECT_NEAR(total[t], w, 1e-6) << t;
  // Two senses weigh 1 and 1/2 (normalised over 3/2). The first: reverse,
  // turn, back, change, contrary, order (the example after the definition is
  // not read): 6 terms; the second: reverse, revoke, annul, decision: 4.
  std::map<std::string, float> rev = AsMap(lex->Terms("reversed"));
  EXPECT_NEAR(rev["reverse"], 1.f + (2.f / 3) * (1.f / 6) + (1.f / 3) * (1.f / 4), 1e-6);
  EXPECT_NEAR(rev["order"], (2.f / 3) * (1.f / 6), 1e-6);
  EXPECT_NEAR(rev["annul"], (1.f / 3) * (1.f / 4), 1e-6);
  EXPECT_EQ(rev.count("list"), 0u);
  // A word the lexicon does not know stands for itself alone.
  EXPECT_EQ(AsMap(lex->Terms("zebras")), (std::map<std::string, float>{{"zebras", 1.f}}));
  // Sorted by term, and a known word's weights sum to 2.
  auto back = lex->Terms("backwards");
  EXPECT_TRUE(std::is_sorted(back.begin(), back.end()));
  float sum = 0;
  for (const auto& [t, w] : back) sum += w;
  EXPECT_NEAR(sum, 2.f, 1e-5);
  EXPECT_GT(AsMap(back)["reverse"], 0.f);
}

TEST_F(LexiconFixture, FeaturesAreTheMeanOfTheWordsBucketsUnknownWordsInTheLastSlot) {
  auto lex = Load();
  ASSERT_NE(lex, nullptr);
  std::vector<float> f(kLexiconFeatureSize), want(kLexiconFeatureSize, 0.f);
  lex->Features("Reverse it, zebras!", f.data());
  for (const auto& [t, w] : lex->Terms("reverse")) want[LexiconBucket(t)] += w / 2;
  want[kLexiconBuckets] = 0.5f;  // "zebras", unknown: the last slot, not its own bucket
  EXPECT_TRUE(lex->Knows("reversed"));
  EXPECT_TRUE(lex->Knows("kids"));
  EXPECT_FALSE(lex->Knows("zebras"));
  for (int64_t i = 0; i < kLexiconFeatureSize; ++i) EXPECT_NEAR(f[i], want[i], 1e-6) << i;
  EXPECT_NEAR(std::accumulate(f.begin(), f.end(), 0.0), 1.5, 1e-5);  // (2 + 1) / 2
  // Cached: the same again.
  std::vector<float> again(kLexiconFeatureSize);
  lex->Features("Reverse it, zebras!", again.data());
  EXPECT_EQ(f, again);
  lex->Features("the 123", f.data());
  EXPECT_EQ(f, std::vector<float>(kLexiconFeatureSize, 0.f));
}

// Combine::kMax: each value is its maximum over the words, so a word keeps
// its weight however many other words the text has.
TEST_F(LexiconFixture, MaxFeaturesAreEachValuesMaximumOverTheWords) {
  auto lex = Load();
  ASSERT_NE(lex, nullptr);
  constexpr auto kMax = Lexicon::Combine::kMax;
  std::vector<float> f(kLexiconFeatureSize), want(kLexiconFeatureSize, 0.f);
  lex->Features("Reverse it, zebras!", f.data(), kMax);
  for (const auto& [t, w] : lex->Terms("reverse")) want[LexiconBucket(t)] += w;  // one word: its own sums
  want[kLexiconBuckets] = 1.f;
  for (int64_t i = 0; i < kLexiconFeatureSize; ++i) EXPECT_NEAR(f[i], want[i], 1e-6) << i;
  // Two known words: the elementwise maximum of their blocks, where the mean halves each.
  std::vector<float> a(kLexiconFeatureSize), b(kLexiconFeatureSize), both(kLexiconFeatureSize),
      mean(kLexiconFeatureSize);
  lex->Features("reverse", a.data(), kMax);
  lex->Features("kids", b.data(), kMax);
  lex->Features("reverse kids", both.data(), kMax);
  lex->Features("reverse kids", mean.data());
  bool halved = false;
  for (int64_t i = 0; i < kLexiconFeatureSize; ++i) {
    EXPECT_FLOAT_EQ(both[i], std::max(a[i], b[i])) << i;
    halved = halved || (a[i] > 0 && b[i] == 0 && std::abs(mean[i] - a[i] / 2) < 1e-6);
  }
  EXPECT_TRUE(halved);
  // Repeating a word changes nothing; no words: zeros.
  lex->Features("reverse reverse reverse", both.data(), kMax);
  EXPECT_EQ(both, a);
  lex->Features("the 123", f.data(), kMax);
  EXPECT_EQ(f, std::vector<float>(kLexiconFeatureSize, 0.f));
}

TEST_F(LexiconFixture, LoadErrorsNameTheFile) {
  {
    auto lex = Load();
    ASSERT_NE(lex, nullptr);
    EXPECT_EQ(lex->fingerprint().size(), 64u);
    Write("verb.exc", "ran run\nswam swim\n");
    auto changed = Lexicon::Load(dir_);
    ASSERT_TRUE(changed.ok());
    EXPECT_NE((*changed)->fingerprint(), lex->fingerprint());
  }
  fs::remove(fs::path(dir_) / "data.adv");
  auto missing = Lexicon::Load(dir_);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("data.adv"), std::string::npos) << missing.status();
  EXPECT_NE(missing.status().message().find("wordnet-base"), std::string::npos) << missing.status();
  WriteAll();
  Write("index.noun", "number n 1 0 1 0 99999999\n");
  auto past = Lexicon::Load(dir_);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(past.status().message().find("index.noun line 1"), std::string::npos) << past.status();
  Write("index.noun", "number n 2 0 1 0 00000040\n");  // two synsets announced, one listed
  EXPECT_EQ(Lexicon::Load(dir_).status().code(), absl::StatusCode::kInvalidArgument);
  WriteAll();
  Write("noun.exc", "children\n");
  auto exc = Lexicon::Load(dir_);
  EXPECT_NE(exc.status().message().find("noun.exc line 1"), std::string::npos) << exc.status();
}

TEST_F(LexiconFixture, ABadSynsetLineIsSkippedNotTrusted) {
  // An index offset that lands inside a line (not where a synset starts).
  auto lex = Load();
  ASSERT_NE(lex, nullptr);
  WriteAll();
  Write("index.noun", "number n 1 0 1 0 00000040\n");
  auto shifted = Lexicon::Load(dir_);
  ASSERT_TRUE(shifted.ok()) << shifted.status();
  EXPECT_EQ(AsMap((*shifted)->Terms("number")), (std::map<std::string, float>{{"number", 1.f}}));
}

TEST_F(LexiconFixture, SharedLoadsOnce) {
  auto a = Lexicon::Shared(dir_);
  auto b = Lexicon::Shared(dir_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_FALSE(Lexicon::Shared(dir_ + "/nowhere").ok());
}

// Debian's WordNet 3.0 (wordnet-base, which scripts/install-deps.sh installs):
// the links the router's lexical features exist for.
TEST(RealWordNetTest, LinksTaskWordsToTheirSynonyms) {
  auto lex = Lexicon::Load("/usr/share/wordnet");
  ASSERT_TRUE(lex.ok()) << lex.status() << " (install Debian's wordnet-base: scripts/install-deps.sh)";
  auto terms = [&](const char* w) { return AsMap((*lex)->Terms(w)); };
  EXPECT_GT(terms("backwards")["reverse"], 0.f);
  EXPECT_GT(terms("total")["add"], 0.f);
  EXPECT_GT(terms("total")["sum"], 0.f);
  EXPECT_GT(terms("alphabetical")["order"], 0.f);
  EXPECT_EQ((*lex)->Canonical("sorted"), "sort");
  EXPECT_EQ((*lex)->Canonical("children"), "child");
  EXPECT_EQ(terms("qwzx"), (std::map<std::string, float>{{"qwzx", 1.f}}));
}

}  // namespace
}  // namespace skillpack
