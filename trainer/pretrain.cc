#include "trainer/pretrain.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "core/utf8.h"
#include "trainer/tasks/task.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;

Status ReadOne(const std::string& path, std::vector<CorpusDocument>* out) {
  StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("corpus file ", path, ": ", text.status().message()));
  const size_t bad = FirstInvalidUtf8(*text);
  if (bad != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("corpus file ", path, ": not valid UTF-8 text (invalid byte at offset ", bad, ")"));
  }
  if (!text->empty()) out->push_back({path, std::move(*text)});
  return absl::OkStatus();
}

// Every regular file below `dir` (symbolic links skipped), sorted.
StatusOr<std::vector<std::string>> FilesBelow(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::file_status s = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_regular_file(s)) files.push_back(it->path().string());
  }
  if (ec) return absl::InvalidArgumentError(absl::StrCat("corpus folder ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

StatusOr<std::vector<CorpusDocument>> ReadCorpus(const std::vector<std::string>& paths) {
  if (paths.empty()) return absl::InvalidArgumentError("corpus: no file or folder given");
  std::vector<CorpusDocument> docs;
  for (const std::string& path : paths) {
    if (!PathExists(path)) return absl::InvalidArgumentError(absl::StrCat("corpus path not found: ", path));
    if (IsDirectory(path)) {
      ASSIGN_OR_RETURN(std::vector<std::string> files, FilesBelow(path));
      for (const std::string& f : files) RETURN_IF_ERROR(ReadOne(f, &docs));
    } else {
      RETURN_IF_ERROR(ReadOne(path, &docs));
    }
  }
  if (docs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("corpus: no text in ", paths.front(),
                                                   paths.size() > 1 ? " and the other paths" : "",
                                                   " (every file is empty)"));
  }
  return docs;
}

StatusOr<PretrainData> BuildPretrainData(const std::vector<CorpusDocument>& docs, const Tokenizer& tokenizer,
                                         int32_t end_id, const PretrainDataOptions& o) {
  if (o.window < 4) return absl::InvalidArgumentError(absl::StrCat("window must be >= 4, got ", o.window));
  if (!(o.held_out_fraction >= 0 && o.held_out_fraction <= 0.5)) {
    return absl::InvalidArgumentError(absl::StrCat("held_out_fraction must be in [0, 0.5], got ", o.held_out_fraction));
  }
  if (!(o.task_fraction >= 0 && o.task_fraction <= 0.9)) {
    return absl::InvalidArgumentError(absl::StrCat("task_fraction must be in [0, 0.9], got ", o.task_fraction));
  }
  if (o.task_fraction > 0 && o.tasks.empty()) {
    return absl::InvalidArgumentError("task_fraction is > 0 but no task is named");
  }
  if (!tokenizer.bos_id()) return absl::InvalidArgumentError("the tokenizer has no BOS token");
  const int32_t bos = *tokenizer.bos_id();

  PretrainData data;
  std::vector<int32_t> stream;
  for (const CorpusDocument& d : docs) {
    data.corpus_bytes += static_cast<int64_t>(d.text.size());
    std::vector<int32_t> ids = tokenizer.Encode(d.text, /*parse_special=*/false, /*add_bos=*/false);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(end_id);
  }
  data.corpus_tokens = static_cast<int64_t>(stream.size());

  const size_t body = static_cast<size_t>(o.window - 1);
  std::vector<TokenizedSequence> windows;
  for (size_t i = 0; i < stream.size(); i += body) {
    const size_t n = std::min(body, stream.size() - i);
    if (n < 2) break;
    TokenizedSequence s;
    s.tokens.reserve(n + 1);
    s.tokens.push_back(bos);
    s.tokens.insert(s.tokens.end(), stream.begin() + static_cast<std::ptrdiff_t>(i),
                    stream.begin() + static_cast<std::ptrdiff_t>(i + n));
    s.prompt_len = 1;
    windows.push_back(std::move(s));
  }

  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<size_t> order(windows.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  size_t n_held = static_cast<size_t>(std::ceil(o.held_out_fraction * static_cast<double>(windows.size())));
  if (o.held_out_fraction > 0) n_held = std::max<size_t>(n_held, 1);
  if (windows.size() <= n_held) {
    return absl::InvalidArgumentError(
        absl::StrCat("the corpus (", data.corpus_tokens, " tokens) makes ", windows.size(), " windows of ", o.window,
                     " tokens: too few to leave one for training after ", n_held, " held-out"));
  }
  std::vector<bool> held(windows.size(), false);
  for (size_t i = 0; i < n_held; ++i) held[order[i]] = true;
  for (size_t i = 0; i < windows.size(); ++i) {
    (held[i] ? data.held_out : data.train).push_back(std::move(windows[i]));
  }
  data.text_windows = static_cast<int64_t>(data.train.size());

  if (o.task_fraction > 0) {
    const double n = static_cast<double>(data.text_windows);
    const int64_t total = static_cast<int64_t>(std::llround(n * o.task_fraction / (1 - o.task_fraction)));
    const int64_t k = static_cast<int64_t>(o.tasks.size());
    SequenceEncoder enc(tokenizer, end_id, o.window);
    for (int64_t t = 0; t < k; ++t) {
      const int64_t count = total / k + (t < total % k ? 1 : 0);
      if (count == 0) continue;
      StatusOr<std::unique_ptr<Task>> task = MakeTask(o.tasks[t]);
      if (!task.ok()) return Annotate(task.status(), absl::StrCat("tasks[", t, "]"));
      ASSIGN_OR_RETURN(std::vector<TaskExample> ex,
                       GenerateTaskExamples(**task, TaskSplit::kTrain, count, o.seed * 1000003 + 17 + t, false));
      for (const TaskExample& e : ex) {
        StatusOr<TokenizedSequence> s = enc.Encode(e.prompt, e.response, false);
        if (!s.ok()) return Annotate(s.status(), absl::StrCat("task ", o.tasks[t], " example"));
        s->prompt_len = 1;  // language modelling of the whole example
        data.train.push_back(std::move(*s));
        ++data.task_examples;
      }
    }
  }
  std::shuffle(data.train.begin(), data.train.end(), rng);
  return data;
}

namespace {

// A sentence worth keeping as general text (CorpusSentences' rules).
bool PlainSentence(absl::string_view s) {
  if (s.empty() || s.size() > 120 || !absl::ascii_isupper(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  const size_t words = std::count(s.begin(), s.end(), ' ') + 1;
  return words >= 4 && words <= 20;
}

// Appends the sentences of one entry (its lines, attribution lines dropped).
void EntrySentences(const std::vector<absl::string_view>& lines, int64_t document, std::vector<CorpusSentence>* out) {
  std::string text;
  for (absl::string_view line : lines) {
    absl::string_view t = absl::StripAsciiWhitespace(line);
    if (t.empty() || absl::StartsWith(t, "--")) continue;
    if (!text.empty()) text += ' ';
    // Whitespace runs inside the line become one space.
    bool space = false;
    for (char c : t) {
      if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
        space = true;
        continue;
      }
      if (space) text += ' ';
      space = false;
      text += c;
    }
  }
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const bool end =
        (text[i] == '.' || text[i] == '?' || text[i] == '!') && (i + 1 == text.size() || text[i + 1] == ' ');
    if (!end) continue;
    absl::string_view s = absl::string_view(text).substr(start, i + 1 - start);
    if (PlainSentence(s)) out->push_back({std::string(s), document});
    start = i + 2;
  }
}

}  // namespace

std::vector<CorpusSentence> CorpusSentences(const std::vector<CorpusDocument>& docs, int64_t n, uint64_t seed) {
  std::vector<CorpusSentence> all;
  for (size_t d = 0; d < docs.size(); ++d) {
    std::vector<absl::string_view> entry;
    for (absl::string_view line : absl::StrSplit(docs[d].text, '\n')) {
      if (absl::StripTrailingAsciiWhitespace(line) == "%") {
        EntrySentences(entry, static_cast<int64_t>(d), &all);
        entry.clear();
      } else {
        entry.push_back(line);
      }
    }
    EntrySentences(entry, static_cast<int64_t>(d), &all);
  }
  // Distinct texts (the first occurrence), then a seeded order.
  std::vector<CorpusSentence> distinct;
  std::set<std::string> seen;
  for (CorpusSentence& s : all) {
    if (seen.insert(s.text).second) distinct.push_back(std::move(s));
  }
  std::mt19937_64 rng(seed);
  std::shuffle(distinct.begin(), distinct.end(), rng);
  if (static_cast<int64_t>(distinct.size()) > n) distinct.resize(static_cast<size_t>(std::max<int64_t>(n, 0)));
  return distinct;
}

}  // namespace skillpack
