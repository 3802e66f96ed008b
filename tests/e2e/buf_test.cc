// The gRPC API as a user of buf (the npm package @bufbuild/buf, pinned in
// tests/npm) sees it, against the real skillpack-server: `buf lint` of proto/
// is clean under proto/buf.yaml (and its STANDARD rules do run), `buf curl
// --list-methods` works over reflection v1 and v1alpha (every service,
// grpc.health.v1.Health included, can be described), health answers per
// service, Admin accepts a lower-case "bearer", and a Qwen 3 chat template
// honours enable_thinking.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "tests/e2e/server_harness.h"

namespace skillpack {
namespace {

namespace fs = std::filesystem;

class BufTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    CommandResult npm = Shell(absl::StrCat("bash ", SKILLPACK_SOURCE_DIR, "/scripts/npm-test-deps.sh ",
                                           SKILLPACK_BINARY_DIR, " 2>/dev/null"));
    ASSERT_EQ(npm.exit_code, 0) << npm.output;
    buf_ = new std::string(JoinPath(SKILLPACK_BINARY_DIR, "npm/node_modules/.bin/buf"));
    dir_ = new std::string(fs::temp_directory_path() / ("skillpack-buf-e2e-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    ASSERT_TRUE(InitTinyModel(TinyOptions(1, 32, 1), Path("base")).ok());
    // Qwen 3's chat template (thinking control) on the tiny model.
    ASSERT_TRUE(WriteFileAtomically(JoinPath(Path("base"), "tokenizer_config.json"),
                                    MakeByteLevelTokenizerConfigJson(ChatTemplateFamily::kQwen3))
                    .ok());
    ASSERT_TRUE(WriteFileAtomically(Path("token"), std::string(kToken) + "\n").ok());
    server_ = new ServerProcess();
    server_->Start({"--model", Path("base"), "--packs", Path("packs"), "--admin-token-file", Path("token")},
                   Path("server.log"));
  }
  static void TearDownTestSuite() {
    delete server_;
    std::error_code ec;
    if (::testing::UnitTest::GetInstance()->failed_test_count() == 0) fs::remove_all(*dir_, ec);
    delete dir_;
    delete buf_;
  }
  static std::string Path(const std::string& name) { return JoinPath(*dir_, name); }

  // `buf curl` against the server over plain-text HTTP/2 with the gRPC protocol.
  static CommandResult Curl(const std::string& args) {
    return Shell(absl::StrCat(*buf_, " curl --protocol grpc --http2-prior-knowledge ", args));
  }
  static std::string Url(const std::string& method = "") { return "http://" + server_->address() + method; }

  static std::string* buf_;
  static std::string* dir_;
  static ServerProcess* server_;
};
std::string* BufTest::buf_ = nullptr;
std::string* BufTest::dir_ = nullptr;
ServerProcess* BufTest::server_ = nullptr;

TEST_F(BufTest, LintIsCleanWithTheJustifiedExceptions) {
  const std::string proto = absl::StrCat(SKILLPACK_SOURCE_DIR, "/proto");
  CommandResult lint = Shell(absl::StrCat("cd ", proto, " && ", *buf_, " lint"));
  EXPECT_EQ(lint.exit_code, 0) << lint.output;
  EXPECT_EQ(lint.output, "");
  // The same STANDARD rules without the exceptions do find the names
  // buf.yaml justifies: the linter really ran over our files.
  CommandResult strict = Shell(
      absl::StrCat("cd ", proto, " && ", *buf_, R"( lint --config '{"version":"v2","lint":{"use":["STANDARD"]}}')"));
  EXPECT_NE(strict.exit_code, 0);
  EXPECT_NE(strict.output.find(R"(Service name "Inference" should be suffixed with "Service")"), std::string::npos)
      << strict.output;
}

TEST_F(BufTest, ListMethodsOverReflectionV1AndV1alpha) {
  for (const char* protocol : {"grpc-v1", "grpc-v1alpha"}) {
    CommandResult list = Curl(absl::StrCat("--reflect-protocol ", protocol, " --list-methods ", Url()));
    ASSERT_EQ(list.exit_code, 0) << protocol << ": " << list.output;
    for (const char* method :
         {"skillpack.v1.Inference/Generate", "skillpack.v1.Inference/GenerateStream", "skillpack.v1.Admin/ListPacks",
          "skillpack.v1.Admin/UploadPack", "grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch",
          "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"}) {
      EXPECT_NE(list.output.find(method), std::string::npos) << protocol << " lacks " << method << ":\n" << list.output;
    }
  }
  // list_services names every service, over both protocols.
  for (const char* protocol : {"grpc-v1", "grpc-v1alpha"}) {
    CommandResult services = Curl(absl::StrCat("--reflect-protocol ", protocol, " --list-services ", Url()));
    ASSERT_EQ(services.exit_code, 0) << services.output;
    for (const char* name : {"skillpack.v1.Inference\n", "skillpack.v1.Admin\n", "grpc.health.v1.Health\n",
                             "grpc.reflection.v1.ServerReflection\n", "grpc.reflection.v1alpha.ServerReflection\n"}) {
      EXPECT_NE(services.output.find(name), std::string::npos) << protocol << " lacks " << name << services.output;
    }
  }
}

TEST_F(BufTest, HealthAnswersForEachServiceByName) {
  for (const char* service : {"", "skillpack.v1.Inference", "skillpack.v1.Admin"}) {
    CommandResult check =
        Curl(absl::StrCat("-d '{\"service\": \"", service, "\"}' ", Url("/grpc.health.v1.Health/Check")));
    ASSERT_EQ(check.exit_code, 0) << service << ": " << check.output;
    EXPECT_NE(check.output.find(R"("status": "SERVING")"), std::string::npos) << service << ": " << check.output;
  }
  CommandResult unknown =
      Curl(absl::StrCat(R"(-d '{"service": "nope.Service"}' )", Url("/grpc.health.v1.Health/Check")));
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("not_found"), std::string::npos) << unknown.output;
}

TEST_F(BufTest, AdminAcceptsLowerCaseBearer) {
  CommandResult ok =
      Curl(absl::StrCat("-H 'authorization: bearer ", kToken, "' -d '{}' ", Url("/skillpack.v1.Admin/ListPacks")));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  CommandResult bad =
      Curl(absl::StrCat("-H 'authorization: bearer wrong' -d '{}' ", Url("/skillpack.v1.Admin/ListPacks")));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("unauthenticated"), std::string::npos) << bad.output;
}

// Generate from JSON through reflection; enable_thinking=false adds Qwen 3's
// empty thinking block ("<think>\n\n</think>\n\n": 19 byte-level tokens) to
// the prompt.
TEST_F(BufTest, GenerateWithQwen3EnableThinking) {
  auto prompt_tokens = [](const std::string& enable_thinking) {
    const std::string body = absl::StrCat(R"({"chat": {"messages": [{"role": "user", "content": "hi"}])",
                                          enable_thinking, R"(}, "sampling": {"maxNewTokens": 2}})");
    CommandResult r = Curl(absl::StrCat("-d '", body, "' ", Url("/skillpack.v1.Inference/Generate")));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    StatusOr<Json> json = ParseJson(r.output, "buf curl output");
    EXPECT_TRUE(json.ok()) << r.output;
    return json.ok() ? (*json)["usage"].value("promptTokens", -1) : -1;
  };
  const int thinking = prompt_tokens("");
  EXPECT_GT(thinking, 0);
  EXPECT_EQ(prompt_tokens(R"(, "enableThinking": true)"), thinking);
  EXPECT_EQ(prompt_tokens(R"(, "enableThinking": false)"), thinking + 19);
}

}  // namespace
}  // namespace skillpack
