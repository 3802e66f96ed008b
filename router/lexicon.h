// Lexical features of a request's words for the router. A word is looked up
// in a lexical database, WordNet 3.0's data files as Debian's wordnet-base
// package installs them (format: wndb(5)), and stands for itself plus what
// its most frequent senses say: their synonyms, the words of their
// definitions and their hypernyms' names. A request worded in words the
// router never met in training then shares features with ones it did:
// WordNet defines "backwards" as "in a manner or order or direction the
// reverse of normal", and lists "total", "sum" and "tally" in one synset
// with "add". Every term is reduced to a base form and hashed into
// kLexiconBuckets buckets; a word the database does not know (a task's random
// argument, a made-up name) counts in one slot of its own instead, so that no
// bucket's meaning hangs on which random strings happened to hash into it.
// A prompt's block is the mean over its words, or each value's maximum over
// them (Combine).
// A base model that knows English gives its hidden states this knowledge;
// the tiny world's byte-level base does not (bench/README.md).
#ifndef SKILLPACK_ROUTER_LEXICON_H_
#define SKILLPACK_ROUTER_LEXICON_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/status.h"

namespace skillpack {

inline constexpr int64_t kLexiconBuckets = 512;
// The buckets, then the slot of unknown words.
inline constexpr int64_t kLexiconFeatureSize = kLexiconBuckets + 1;
// A word's senses read per part of speech, most frequent first (the index
// files' order); sense r (from 0) weighs 1 / (r + 1).
inline constexpr int kLexiconSensesPerPos = 3;

// The directory a router's lexicon is read from: $SKILLPACK_LEXICON_DIR when
// set, else /usr/share/wordnet.
std::string DefaultLexiconDir();

// The bucket a term counts in: 64-bit FNV-1a of its bytes modulo
// kLexiconBuckets (the same on every build and machine).
int64_t LexiconBucket(absl::string_view term);

class Lexicon {
 public:
  // Reads dir's index.{noun,verb,adj,adv}, data.{noun,verb,adj,adv} and
  // {noun,verb,adj,adv}.exc. NOT_FOUND naming the file when one is missing;
  // INVALID_ARGUMENT naming the file and line for a malformed index or
  // exception line, or an index entry pointing past its data file.
  static StatusOr<std::unique_ptr<Lexicon>> Load(const std::string& dir);
  // The lexicon of `dir`, loaded on first use and kept for the process
  // (a failed load is retried on the next call).
  static StatusOr<const Lexicon*> Shared(const std::string& dir);
  // Shared(DefaultLexiconDir()).
  static StatusOr<const Lexicon*> Default();

  const std::string& dir() const { return dir_; }
  // SHA-256 of the files read, in a fixed order: a router records the
  // lexicon it was trained with and refuses another.
  const std::string& fingerprint() const { return fingerprint_; }

  // The words of `text` the features read: runs of ASCII letters,
  // lower-cased, without words of one letter and common function words
  // ("the", "please", "what", ...).
  static std::vector<std::string> Words(absl::string_view text);
  // The forms of `word` (lower case) that the database lists, per part of
  // speech as WordNet's morphy finds them: the word itself, its irregular
  // base forms (the .exc files), then the regular suffix rules' results.
  // Index: 0 noun, 1 verb, 2 adjective, 3 adverb.
  using Forms = std::array<std::vector<std::string>, 4>;
  Forms BaseForms(absl::string_view word) const;
  // The term `word` counts as: its first base form other than itself (noun,
  // verb, adjective, adverb order: "sorted" is "sort", though WordNet also
  // lists "sorted" as an adjective), else the word unchanged.
  std::string Canonical(absl::string_view word) const;
  // The weighted terms `word` stands for: its Canonical form with weight 1,
  // and, when the database knows it, the terms of its first
  // kLexiconSensesPerPos senses per part of speech (each synset's words and
  // definition words weight 1, its hypernyms' words 1/2, normalised to the
  // sense's weight), all of them together scaled to sum to 1. Sorted by term.
  std::vector<std::pair<std::string, float>> Terms(absl::string_view word) const;
  // True when the database lists `word` or a base form of it.
  bool Knows(absl::string_view word) const;
  // How a text's words combine into its block: kMean, the mean over the
  // words (a word's share shrinks as the text grows); kMax, each value's
  // maximum over the words (a word counts as much in a long request told
  // inside a situation as in a short one).
  enum class Combine { kMean, kMax };
  // The feature block of `text` into out[0, kLexiconFeatureSize): over
  // Words(text), combined as `combine` says, each known word's Terms, each
  // in its term's LexiconBucket, and each unknown word's 1 in the last slot
  // (out[kLexiconBuckets]). Zeros when the text has no words. Thread-safe.
  void Features(absl::string_view text, float* out, Combine combine = Combine::kMean) const;

 private:
  struct Synset {
    std::vector<std::string> words;                   // lower case, '_' split into words
    std::vector<std::string> definition;              // Words() of the gloss's definition
    std::vector<std::pair<int, uint32_t>> hypernyms;  // (part of speech, offset)
  };
  Lexicon() = default;
  // The synset at `offset` of part of speech `pos`'s data file; false when
  // no well-formed synset line starts there.
  bool ParseSynset(int pos, uint32_t offset, Synset* out) const;
  bool Indexed(int pos, absl::string_view lemma) const;
  // Terms(word) from its BaseForms, computed once by the caller.
  std::vector<std::pair<std::string, float>> TermsOf(absl::string_view word, const Forms& forms) const;
  // A word's buckets and weights (LexiconBucket of Terms, or the unknown
  // words' slot), cached.
  std::vector<std::pair<int32_t, float>> Buckets(const std::string& word) const;

  // A lemma's first kLexiconSensesPerPos synsets per part of speech (all
  // that TermsOf reads), most frequent first: a fixed record per lemma, not
  // four vectors (~150k lemmas).
  struct Senses {
    std::array<std::array<uint32_t, kLexiconSensesPerPos>, 4> offsets;
    std::array<uint8_t, 4> count = {};
  };

  std::string dir_, fingerprint_;
  std::array<std::string, 4> data_;
  absl::flat_hash_map<std::string, Senses> index_;
  std::array<absl::flat_hash_map<std::string, std::vector<std::string>>, 4> exceptions_;
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, std::vector<std::pair<int32_t, float>>> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace skillpack

#endif  // SKILLPACK_ROUTER_LEXICON_H_
