// Pretraining data: plain UTF-8 text files (a corpus) cut into windows of
// `window` tokens for next-token language modelling, a held-out slice of those
// windows for perplexity, and a light mixture of synthetic task examples
// (train split only) so that a pretrained base knows the tasks' prompt formats.
//
// Every sequence is [BOS, t_1 .. t_n] with prompt_len 1, so SftObjective /
// ResponseLoss (trainer/sft.h) train and score every token after BOS: the
// pretrain stage reuses the SFT objective and the shared training loop.
#ifndef SKILLPACK_TRAINER_PRETRAIN_H_
#define SKILLPACK_TRAINER_PRETRAIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/status.h"
#include "core/tokenizer.h"
#include "trainer/data.h"

namespace skillpack {

struct CorpusDocument {
  std::string path;
  std::string text;
};

// Reads the corpus: each path is a file or a folder (every regular file below
// it, recursively, in sorted path order; symbolic links are skipped so a
// folder's aliases are not read twice). Empty files are skipped. Errors:
// INVALID_ARGUMENT naming the path when it does not exist, when a file is not
// valid UTF-8 (with the byte offset), or when the whole corpus holds no text.
StatusOr<std::vector<CorpusDocument>> ReadCorpus(const std::vector<std::string>& paths);

struct PretrainDataOptions {
  int64_t window = 128;             // tokens per sequence, BOS included (>= 4)
  double held_out_fraction = 0.02;  // of the text windows, in [0, 0.5]
  // Task examples as a fraction of the training sequences, in [0, 0.9]: with
  // N training windows, round(N * f / (1 - f)) examples, split evenly over
  // `tasks` (their train split; generated with seeds derived from `seed`).
  double task_fraction = 0.0;
  std::vector<std::string> tasks;  // built-in task names; empty: no mixture
  uint64_t seed = 0;               // held-out choice, task examples, order
};

struct PretrainData {
  std::vector<TokenizedSequence> train;     // text windows and task examples, shuffled
  std::vector<TokenizedSequence> held_out;  // text windows only
  int64_t corpus_bytes = 0;
  int64_t corpus_tokens = 0;  // text tokens, the end tokens between documents included
  int64_t text_windows = 0;   // training windows (held-out ones not counted)
  int64_t task_examples = 0;
};

// Tokenizes every document (no special tokens are parsed in corpus text),
// joins them with `end_id` after each document into one stream and cuts it
// into consecutive, non-overlapping windows of window - 1 tokens, each
// prefixed by the tokenizer's BOS (the last window may be shorter; one of
// fewer than 2 tokens is dropped). A seeded shuffle of the windows picks
// ceil(held_out_fraction * windows) held-out ones (at least 1 when the
// fraction is > 0, and never all of them). Task examples are prompt + response
// + end_id, cut to `window`. Same inputs, same output.
// INVALID_ARGUMENT for out-of-range options, an unknown task, a tokenizer
// without BOS, or a corpus too small to leave a training window.
StatusOr<PretrainData> BuildPretrainData(const std::vector<CorpusDocument>& docs, const Tokenizer& tokenizer,
                                         int32_t end_id, const PretrainDataOptions& options);

// One sentence of a corpus and the index of the document it came from.
struct CorpusSentence {
  std::string text;
  int64_t document = 0;
};

// Up to `n` distinct sentences of the corpus in a seeded order (same
// arguments, same output): each document is cut into entries at lines that
// are exactly "%" (the fortune-file separator; a document without one is one
// entry), attribution lines (starting, after blanks, with "--") are dropped,
// whitespace runs become one space, and an entry is cut after '.', '?' or
// '!' followed by a space. A sentence is kept when it starts with an ASCII
// capital letter, holds only printable ASCII, and has 4 to 20 words and at
// most 120 bytes. Fewer than `n` when the corpus has fewer such sentences.
std::vector<CorpusSentence> CorpusSentences(const std::vector<CorpusDocument>& docs, int64_t n, uint64_t seed);

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_PRETRAIN_H_
