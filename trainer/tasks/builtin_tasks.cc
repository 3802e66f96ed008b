#include "trainer/tasks/builtin_tasks.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace skillpack {
namespace {

int64_t Uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {  // inclusive
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

std::string RandomString(std::mt19937_64& rng, int64_t min_len, int64_t max_len, char first, int alphabet) {
  std::string s(static_cast<size_t>(Uniform(rng, min_len, max_len)), first);
  for (char& c : s) c = static_cast<char>(first + Uniform(rng, 0, alphabet - 1));
  return s;
}

bool AllIn(absl::string_view s, char lo, char hi) {
  return std::all_of(s.begin(), s.end(), [&](char c) { return c >= lo && c <= hi; });
}

Status BadPrompt(const char* task, absl::string_view prompt, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("not a '", task, "' prompt (", why, "): \"", prompt, "\""));
}

// `prompt` = prefix + body + suffix; returns body or an error.
StatusOr<absl::string_view> Body(const char* task, absl::string_view prompt, absl::string_view prefix,
                                 absl::string_view suffix) {
  if (!absl::StartsWith(prompt, prefix) || !absl::EndsWith(prompt, suffix) ||
      prompt.size() < prefix.size() + suffix.size()) {
    return BadPrompt(task, prompt, absl::StrCat("expected \"", prefix, "...", suffix, "\""));
  }
  return prompt.substr(prefix.size(), prompt.size() - prefix.size() - suffix.size());
}

// `answer` with one character replaced by a different one from [first, first+alphabet).
std::string MutateOne(std::string answer, std::mt19937_64& rng, char first, int alphabet) {
  if (answer.empty()) return std::string(1, first);
  size_t i = static_cast<size_t>(Uniform(rng, 0, static_cast<int64_t>(answer.size()) - 1));
  char c = answer[i];
  answer[i] = static_cast<char>(first + (c - first + Uniform(rng, 1, alphabet - 1)) % alphabet);
  return answer;
}

// "37+45=" -> "82".
class AddTask : public Task {
 public:
  const char* name() const override { return "add"; }
  int32_t max_response_bytes() const override { return 3; }
  TaskExample Sample(std::mt19937_64& rng) const override {
    int64_t a = Uniform(rng, 0, 99), b = Uniform(rng, 0, 99);
    return {absl::StrCat(a, "+", b, "="), absl::StrCat(a + b)};
  }
  StatusOr<std::string> Solve(absl::string_view prompt) const override {
    ASSIGN_OR_RETURN(absl::string_view body, Body(name(), prompt, "", "="));
    size_t plus = body.find('+');
    if (plus == absl::string_view::npos) return BadPrompt(name(), prompt, "no '+'");
    int64_t v[2];
    absl::string_view parts[2] = {body.substr(0, plus), body.substr(plus + 1)};
    for (int i = 0; i < 2; ++i) {
      absl::string_view p = parts[i];
      if (p.empty() || p.size() > 2 || !AllIn(p, '0', '9') || (p.size() > 1 && p[0] == '0') ||
          !absl::SimpleAtoi(p, &v[i])) {
        return BadPrompt(name(), prompt, "operands must be integers in [0, 99]");
      }
    }
    return absl::StrCat(v[0] + v[1]);
  }
  std::string WrongResponse(absl::string_view prompt, std::mt19937_64& rng) const override {
    int64_t right = 0;
    (void)absl::SimpleAtoi(Solve(prompt).value_or("0"), &right);
    int64_t off = Uniform(rng, 1, 10);
    return absl::StrCat(right >= off && rng() % 2 == 0 ? right - off : right + off);
  }
};

// "rev abcd=" -> "dcba".
class ReverseTask : public Task {
 public:
  const char* name() const override { return "reverse"; }
  int32_t max_response_bytes() const override { return kMaxLen; }
  TaskExample Sample(std::mt19937_64& rng) const override {
    std::string s = RandomString(rng, kMinLen, kMaxLen, 'a', 26);
    return {absl::StrCat("rev ", s, "="), std::string(s.rbegin(), s.rend())};
  }
  StatusOr<std::string> Solve(absl::string_view prompt) const override {
    ASSIGN_OR_RETURN(absl::string_view s, Body(name(), prompt, "rev ", "="));
    if (s.size() < kMinLen || s.size() > kMaxLen || !AllIn(s, 'a', 'z')) {
      return BadPrompt(name(), prompt, "expected 3-6 letters a-z");
    }
    return std::string(s.rbegin(), s.rend());
  }
  std::string WrongResponse(absl::string_view prompt, std::mt19937_64& rng) const override {
    std::string right = Solve(prompt).value_or("");
    std::string copy(Body(name(), prompt, "rev ", "=").value_or(""));
    return copy != right ? copy : MutateOne(right, rng, 'a', 26);  // copying is the natural mistake
  }

 private:
  static constexpr int64_t kMinLen = 3, kMaxLen = 6;
};

// "sort 5391=" -> "1359".
class SortTask : public Task {
 public:
  const char* name() const override { return "sort"; }
  int32_t max_response_bytes() const override { return kMaxLen; }
  TaskExample Sample(std::mt19937_64& rng) const override {
    std::string s = RandomString(rng, kMinLen, kMaxLen, '0', 10);
    std::string sorted = s;
    std::sort(sorted.begin(), sorted.end());
    return {absl::StrCat("sort ", s, "="), sorted};
  }
  StatusOr<std::string> Solve(absl::string_view prompt) const override {
    ASSIGN_OR_RETURN(absl::string_view s, Body(name(), prompt, "sort ", "="));
    if (s.size() < kMinLen || s.size() > kMaxLen || !AllIn(s, '0', '9')) {
      return BadPrompt(name(), prompt, "expected 3-6 digits");
    }
    std::string sorted(s);
    std::sort(sorted.begin(), sorted.end());
    return sorted;
  }
  std::string WrongResponse(absl::string_view prompt, std::mt19937_64& rng) const override {
    std::string right = Solve(prompt).value_or("");
    std::string orig(Body(name(), prompt, "sort ", "=").value_or(""));
    return orig != right ? orig : MutateOne(right, rng, '0', 10);
  }

 private:
  static constexpr int64_t kMinLen = 3, kMaxLen = 6;
};

// "a=3;b=5;c=1 b?" -> "5".
class KvTask : public Task {
 public:
  const char* name() const override { return "kv"; }
  int32_t max_response_bytes() const override { return 1; }
  TaskExample Sample(std::mt19937_64& rng) const override {
    std::string keys = "abcdefghijklmnopqrstuvwxyz";
    std::shuffle(keys.begin(), keys.end(), rng);
    keys.resize(static_cast<size_t>(Uniform(rng, 3, 4)));
    std::string prompt, answer;
    const size_t query = static_cast<size_t>(Uniform(rng, 0, static_cast<int64_t>(keys.size()) - 1));
    for (size_t i = 0; i < keys.size(); ++i) {
      char value = static_cast<char>('0' + Uniform(rng, 0, 9));
      absl::StrAppend(&prompt, i ? ";" : "", std::string(1, keys[i]), "=", std::string(1, value));
      if (i == query) answer = std::string(1, value);
    }
    absl::StrAppend(&prompt, " ", std::string(1, keys[query]), "?");
    return {prompt, answer};
  }
  StatusOr<std::string> Solve(absl::string_view prompt) const override {
    // "k=v;k=v;... q?"
    if (prompt.size() < 4 || prompt.back() != '?' || prompt[prompt.size() - 3] != ' ') {
      return BadPrompt(name(), prompt, "expected \"k=v;...;k=v q?\"");
    }
    const char query = prompt[prompt.size() - 2];
    absl::string_view pairs = prompt.substr(0, prompt.size() - 3);
    if ((pairs.size() + 1) % 4 != 0) return BadPrompt(name(), prompt, "malformed pairs");
    std::set<char> keys;
    std::string answer;
    for (size_t i = 0; i < pairs.size(); i += 4) {
      const char k = pairs[i], v = pairs[i + 2];
      if (k < 'a' || k > 'z' || pairs[i + 1] != '=' || v < '0' || v > '9' ||
          (i + 3 < pairs.size() && pairs[i + 3] != ';') || !keys.insert(k).second) {
        return BadPrompt(name(), prompt, "pairs must be distinct letters = digits, ';'-separated");
      }
      if (k == query) answer = std::string(1, v);
    }
    if (answer.empty()) return BadPrompt(name(), prompt, "queried key is not defined");
    return answer;
  }
  std::string WrongResponse(absl::string_view prompt, std::mt19937_64& rng) const override {
    return MutateOne(Solve(prompt).value_or("0"), rng, '0', 10);
  }
};

// "rot3 abc=" -> "def".
class CaesarTask : public Task {
 public:
  const char* name() const override { return "caesar"; }
  int32_t max_response_bytes() const override { return kMaxLen; }
  TaskExample Sample(std::mt19937_64& rng) const override {
    const int64_t shift = Uniform(rng, 1, 5);
    std::string s = RandomString(rng, kMinLen, kMaxLen, 'a', 26);
    return {absl::StrCat("rot", shift, " ", s, "="), Shift(s, shift)};
  }
  StatusOr<std::string> Solve(absl::string_view prompt) const override {
    ASSIGN_OR_RETURN(absl::string_view body, Body(name(), prompt, "rot", "="));
    if (body.size() < 2 || body[0] < '1' || body[0] > '5' || body[1] != ' ') {
      return BadPrompt(name(), prompt, "expected a shift 1-5 then a space");
    }
    absl::string_view s = body.substr(2);
    if (s.size() < kMinLen || s.size() > kMaxLen || !AllIn(s, 'a', 'z')) {
      return BadPrompt(name(), prompt, "expected 3-6 letters a-z");
    }
    return Shift(s, body[0] - '0');
  }
  std::string WrongResponse(absl::string_view prompt, std::mt19937_64& rng) const override {
    std::string right = Solve(prompt).value_or("");
    return MutateOne(right, rng, 'a', 26);
  }

 private:
  static std::string Shift(absl::string_view s, int64_t shift) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>('a' + (c - 'a' + shift) % 26);
    return out;
  }
  static constexpr int64_t kMinLen = 3, kMaxLen = 6;
};

}  // namespace

std::vector<std::string> BuiltinTaskNames() { return {"add", "caesar", "kv", "reverse", "sort"}; }

std::unique_ptr<Task> MakeBuiltinTask(absl::string_view name) {
  if (name == "add") return std::make_unique<AddTask>();
  if (name == "reverse") return std::make_unique<ReverseTask>();
  if (name == "sort") return std::make_unique<SortTask>();
  if (name == "kv") return std::make_unique<KvTask>();
  if (name == "caesar") return std::make_unique<CaesarTask>();
  return nullptr;
}

}  // namespace skillpack
