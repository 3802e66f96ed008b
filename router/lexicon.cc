#include "router/lexicon.h"

#include <algorithm>
#include <cstdlib>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/fnv1a.h"
#include "core/sha256.h"

namespace skillpack {
namespace {

// Words whose buckets Features keeps (~100 bytes each).
constexpr size_t kCachedWords = 200000;

constexpr const char* kPosNames[4] = {"noun", "verb", "adj", "adv"};

// WordNet's morphy suffix rules (morph.c): (suffix, ending) per part of speech.
struct SuffixRule {
  const char* suffix;
  const char* ending;
};
constexpr SuffixRule kNounRules[] = {{"s", ""},      {"ses", "s"},   {"xes", "x"},   {"zes", "z"},
                                     {"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"}};
constexpr SuffixRule kVerbRules[] = {{"s", ""},   {"ies", "y"}, {"es", "e"},  {"es", ""},
                                     {"ed", "e"}, {"ed", ""},   {"ing", "e"}, {"ing", ""}};
constexpr SuffixRule kAdjRules[] = {{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}};

// Function words: frequent in requests of every kind, and in WordNet as
// letters, vitamins and the like ("a", "be", "do").
const absl::flat_hash_set<std::string>& Stopwords() {
  static const auto* words = new absl::flat_hash_set<std::string>{
      "about", "above",   "after", "again", "all",    "also",  "am",   "an",   "and",    "any",     "are",
      "as",    "at",      "be",    "been",  "being",  "both",  "but",  "by",   "can",    "could",   "did",
      "do",    "does",    "doing", "for",   "from",   "had",   "has",  "have", "having", "he",      "her",
      "here",  "hers",    "him",   "his",   "how",    "if",    "in",   "into", "is",     "it",      "its",
      "just",  "kindly",  "me",    "might", "mine",   "more",  "most", "must", "my",     "no",      "nor",
      "not",   "now",     "of",    "off",   "on",     "once",  "only", "or",   "our",    "ours",    "out",
      "over",  "please",  "shall", "she",   "should", "so",    "some", "such", "than",   "that",    "the",
      "their", "theirs",  "them",  "then",  "there",  "these", "they", "this", "those",  "through", "to",
      "too",   "under",   "until", "up",    "us",     "very",  "was",  "we",   "were",   "what",    "when",
      "where", "which",   "while", "who",   "whom",   "why",   "will", "with", "would",  "you",     "your",
      "yours", "yourself"};
  return *words;
}

bool LongerWithSuffix(absl::string_view s, absl::string_view suffix) {
  return s.size() > suffix.size() && absl::EndsWith(s, suffix);
}

void AddUnique(std::vector<std::string>* v, std::string s) {
  if (std::find(v->begin(), v->end(), s) == v->end()) v->push_back(std::move(s));
}

// Whether any part of speech has a base form.
bool AnyForm(const Lexicon::Forms& forms) {
  for (const std::vector<std::string>& f : forms) {
    if (!f.empty()) return true;
  }
  return false;
}

// Lexicon::Canonical of `word` from its BaseForms: an inflected form
// ("sorted", listed itself as an adjective) counts as its base ("sort"); a
// word listed only as itself stays.
std::string FirstOtherForm(absl::string_view word, const Lexicon::Forms& forms) {
  for (const std::vector<std::string>& f : forms) {
    for (const std::string& form : f) {
      if (form != word) return form;
    }
  }
  return std::string(word);
}

Status Malformed(const std::string& path, size_t line, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("lexicon file ", path, " line ", line, ": ", why));
}

}  // namespace

std::string DefaultLexiconDir() {
  const char* env = std::getenv("SKILLPACK_LEXICON_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string("/usr/share/wordnet");
}

int64_t LexiconBucket(absl::string_view term) {
  return static_cast<int64_t>(Fnv1a64(term) % static_cast<uint64_t>(kLexiconBuckets));
}

StatusOr<std::unique_ptr<Lexicon>> Lexicon::Load(const std::string& dir) {
  std::unique_ptr<Lexicon> lex(new Lexicon());
  lex->dir_ = dir;
  Sha256 digest;
  auto read = [&](const std::string& name) -> StatusOr<std::string> {
    const std::string path = JoinPath(dir, name);
    StatusOr<std::string> bytes = ReadFileToString(path);
    if (!bytes.ok()) {
      return Annotate(bytes.status(),
                      "lexicon (WordNet 3.0's files, Debian package wordnet-base; or set SKILLPACK_LEXICON_DIR)");
    }
    digest.Update(absl::StrCat(name, "\n", bytes->size(), "\n"));
    digest.Update(*bytes);
    return bytes;
  };
  for (int pos = 0; pos < 4; ++pos) {
    ASSIGN_OR_RETURN(lex->data_[pos], read(absl::StrCat("data.", kPosNames[pos])));
  }
  for (int pos = 0; pos < 4; ++pos) {
    const std::string name = absl::StrCat("index.", kPosNames[pos]);
    const std::string path = JoinPath(dir, name);
    ASSIGN_OR_RETURN(std::string text, read(name));
    size_t line_no = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      ++line_no;
      if (line.empty() || line[0] == ' ') continue;  // the licence header's lines start with spaces
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      int64_t synsets = 0, pointers = 0;
      if (f.size() < 6 || !absl::SimpleAtoi(f[2], &synsets) || !absl::SimpleAtoi(f[3], &pointers) || synsets < 1 ||
          pointers < 0 || f.size() != static_cast<size_t>(4 + pointers + 2 + synsets)) {
        return Malformed(path, line_no, "not an index entry (lemma pos synset_cnt p_cnt ... offsets)");
      }
      Senses& senses = lex->index_[std::string(f[0])];
      for (size_t i = f.size() - static_cast<size_t>(synsets); i < f.size(); ++i) {
        uint32_t off = 0;
        if (!absl::SimpleAtoi(f[i], &off) || off >= lex->data_[pos].size()) {
          return Malformed(path, line_no, absl::StrCat("synset offset '", f[i], "' is not in data.", kPosNames[pos]));
        }
        if (senses.count[pos] < kLexiconSensesPerPos) senses.offsets[pos][senses.count[pos]++] = off;
      }
    }
  }
  for (int pos = 0; pos < 4; ++pos) {
    const std::string name = absl::StrCat(kPosNames[pos], ".exc");
    ASSIGN_OR_RETURN(std::string text, read(name));
    size_t line_no = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      ++line_no;
      if (line.empty()) continue;
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 2) return Malformed(JoinPath(dir, name), line_no, "not 'inflected base [base...]'");
      std::vector<std::string>& bases = lex->exceptions_[pos][std::string(f[0])];
      for (size_t i = 1; i < f.size(); ++i) AddUnique(&bases, std::string(f[i]));
    }
  }
  lex->fingerprint_ = digest.FinalHex();
  return lex;
}

StatusOr<const Lexicon*> Lexicon::Shared(const std::string& dir) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* loaded = new std::map<std::string, std::unique_ptr<Lexicon>>();
  absl::MutexLock lock(&mu);
  auto it = loaded->find(dir);
  if (it == loaded->end()) {
    ASSIGN_OR_RETURN(std::unique_ptr<Lexicon> lex, Load(dir));
    it = loaded->emplace(dir, std::move(lex)).first;
  }
  return it->second.get();
}

StatusOr<const Lexicon*> Lexicon::Default() { return Shared(DefaultLexiconDir()); }

std::vector<std::string> Lexicon::Words(absl::string_view text) {
  std::vector<std::string> out;
  std::string word;
  auto flush = [&] {
    if (word.size() > 1 && !Stopwords().contains(word)) out.push_back(word);
    word.clear();
  };
  for (char c : text) {
    if (absl::ascii_isalpha(static_cast<unsigned char>(c))) {
      word.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    } else {
      flush();
    }
  }
  flush();
  return out;
}

bool Lexicon::Indexed(int pos, absl::string_view lemma) const {
  auto it = index_.find(lemma);
  return it != index_.end() && it->second.count[pos] > 0;
}

Lexicon::Forms Lexicon::BaseForms(absl::string_view word) const {
  Forms out;
  const absl::Span<const SuffixRule> rules[4] = {kNounRules, kVerbRules, kAdjRules, {}};
  for (int pos = 0; pos < 4; ++pos) {
    if (Indexed(pos, word)) AddUnique(&out[pos], std::string(word));
    auto exc = exceptions_[pos].find(word);
    if (exc != exceptions_[pos].end()) {
      for (const std::string& base : exc->second) {
        if (Indexed(pos, base)) AddUnique(&out[pos], base);
      }
    }
    for (const SuffixRule& r : rules[pos]) {
      if (!LongerWithSuffix(word, r.suffix)) continue;
      std::string base = absl::StrCat(word.substr(0, word.size() - std::char_traits<char>::length(r.suffix)), r.ending);
      if (Indexed(pos, base)) AddUnique(&out[pos], std::move(base));
    }
  }
  return out;
}

bool Lexicon::Knows(absl::string_view word) const { return AnyForm(BaseForms(word)); }

std::string Lexicon::Canonical(absl::string_view word) const { return FirstOtherForm(word, BaseForms(word)); }

bool Lexicon::ParseSynset(int pos, uint32_t offset, Synset* out) const {
  const std::string& data = data_[pos];
  if (offset >= data.size()) return false;
  size_t end = data.find('\n', offset);
  absl::string_view line(data.data() + offset, (end == std::string::npos ? data.size() : end) - offset);
  const size_t bar = line.find(" | ");
  absl::string_view head = line.substr(0, bar);
  std::vector<absl::string_view> f = absl::StrSplit(head, ' ', absl::SkipEmpty());
  uint32_t at = 0;
  int64_t words = 0;
  if (f.size() < 4 || !absl::SimpleAtoi(f[0], &at) || at != offset || !absl::SimpleHexAtoi(f[3], &words) || words < 1 ||
      f.size() < static_cast<size_t>(4 + 2 * words + 1)) {
    return false;
  }
  out->words.clear();
  for (int64_t i = 0; i < words; ++i) {
    absl::string_view w = f[4 + 2 * i];
    w = w.substr(0, w.find('('));  // adjectives' syntactic markers: "(a)", "(p)", "(ip)"
    for (absl::string_view part : absl::StrSplit(w, '_', absl::SkipEmpty())) {
      AddUnique(&out->words, absl::AsciiStrToLower(part));
    }
  }
  size_t i = static_cast<size_t>(4 + 2 * words);
  int64_t pointers = 0;
  if (!absl::SimpleAtoi(f[i], &pointers) || pointers < 0 || f.size() < i + 1 + 4 * static_cast<size_t>(pointers)) {
    return false;
  }
  out->hypernyms.clear();
  for (int64_t p = 0; p < pointers; ++p) {
    absl::string_view symbol = f[i + 1 + 4 * p], target = f[i + 2 + 4 * p], tpos = f[i + 3 + 4 * p];
    if (symbol != "@" && symbol != "@i") continue;
    uint32_t off = 0;
    int target_pos = tpos == "n" ? 0 : tpos == "v" ? 1 : (tpos == "a" || tpos == "s") ? 2 : tpos == "r" ? 3 : -1;
    if (target_pos >= 0 && absl::SimpleAtoi(target, &off)) out->hypernyms.push_back({target_pos, off});
  }
  out->definition.clear();
  if (bar != absl::string_view::npos) {
    absl::string_view gloss = line.substr(bar + 3);
    gloss = gloss.substr(0, gloss.find('"'));  // the definition, before the quoted examples
    out->definition = Words(gloss);
  }
  return true;
}

std::vector<std::pair<std::string, float>> Lexicon::Terms(absl::string_view word) const {
  return TermsOf(word, BaseForms(word));
}

std::vector<std::pair<std::string, float>> Lexicon::TermsOf(absl::string_view word, const Forms& forms) const {
  std::map<std::string, double> senses;  // the senses' terms, before scaling to 1
  for (int pos = 0; pos < 4; ++pos) {
    std::vector<uint32_t> offsets;  // the first senses of each base form, most frequent first
    for (const std::string& form : forms[pos]) {
      const Senses& first = index_.find(form)->second;
      for (size_t r = 0; r < first.count[pos]; ++r) {
        const uint32_t off = first.offsets[pos][r];
        if (std::find(offsets.begin(), offsets.end(), off) == offsets.end()) offsets.push_back(off);
      }
    }
    for (size_t r = 0; r < offsets.size() && r < static_cast<size_t>(kLexiconSensesPerPos); ++r) {
      Synset s;
      if (!ParseSynset(pos, offsets[r], &s)) continue;
      std::map<std::string, double> terms;
      for (const std::string& w : s.words) terms[Canonical(w)] += 1.0;
      for (const std::string& w : s.definition) terms[Canonical(w)] += 1.0;
      for (const auto& [hpos, hoff] : s.hypernyms) {
        Synset h;
        if (!ParseSynset(hpos, hoff, &h)) continue;
        for (const std::string& w : h.words) terms[Canonical(w)] += 0.5;
      }
      double total = 0;
      for (const auto& [t, w] : terms) total += w;
      const double sense_weight = 1.0 / static_cast<double>(r + 1);
      for (const auto& [t, w] : terms) senses[t] += sense_weight * w / total;
    }
  }
  std::map<std::string, double> all;
  all[FirstOtherForm(word, forms)] = 1.0;
  double total = 0;
  for (const auto& [t, w] : senses) total += w;
  for (const auto& [t, w] : senses) all[t] += w / total;
  std::vector<std::pair<std::string, float>> out;
  for (const auto& [t, w] : all) out.push_back({t, static_cast<float>(w)});
  return out;
}

std::vector<std::pair<int32_t, float>> Lexicon::Buckets(const std::string& word) const {
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) return it->second;
  }
  std::map<int32_t, float> sum;
  const Forms forms = BaseForms(word);
  if (AnyForm(forms)) {
    for (const auto& [term, w] : TermsOf(word, forms)) sum[static_cast<int32_t>(LexiconBucket(term))] += w;
  } else {
    sum[static_cast<int32_t>(kLexiconBuckets)] = 1.0f;
  }
  std::vector<std::pair<int32_t, float>> out(sum.begin(), sum.end());
  absl::MutexLock lock(&mu_);
  if (cache_.size() < kCachedWords) cache_.emplace(word, out);  // bounded: requests bring any words
  return out;
}

void Lexicon::Features(absl::string_view text, float* out, Combine combine) const {
  std::fill(out, out + kLexiconFeatureSize, 0.0f);
  const std::vector<std::string> words = Words(text);
  if (words.empty()) return;
  const float scale = 1.0f / static_cast<float>(words.size());
  for (const std::string& w : words) {
    // A word's buckets are distinct (Buckets sums its terms per bucket), so
    // the max is over words, not over one word's terms.
    for (const auto& [bucket, weight] : Buckets(w)) {
      if (combine == Combine::kMean) {
        out[bucket] += weight * scale;
      } else {
        out[bucket] = std::max(out[bucket], weight);
      }
    }
  }
}

}  // namespace skillpack
