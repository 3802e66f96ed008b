// End-to-end test of `skillpack pack create|inspect|verify|apply`, driving the
// real binary: a tiny base, a fine-tuned copy made here with the core API, a
// pack made from them, checked against the right and a wrong base, applied,
// and the merged folder generating text.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "core/file_util.h"
#include "core/json_util.h"
#include "core/model.h"
#include "pack/compressor.h"
#include "pack/decode.h"
#include "pack/format.h"
#include "tests/e2e/shell.h"

namespace skillpack {
namespace {

const std::string kBinary = SKILLPACK_BINARY_DIR "/cli/skillpack";

CommandResult RunCli(const std::string& args) { return Shell(kBinary + " " + args); }

class PackCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/pack_cli_test_" + std::to_string(getpid()));
    ASSERT_TRUE(MakeDirectories(*dir_).ok());
    for (const char* seed : {"1", "2"}) {
      CommandResult r = RunCli(absl::StrCat("model init-tiny --out ", *dir_, "/base", seed,
                                            " --layers 2 --hidden 64 --heads 4 --kv-heads 2 --seed ", seed));
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    // The "fine-tuned" model: base1 plus low-rank + noise deltas on the
    // projections, a few embedding rows and the final norm changed.
    auto base = LoadModel(*dir_ + "/base1", at::TensorOptions().dtype(at::kFloat));
    ASSERT_TRUE(base.ok()) << base.status();
    at::Generator gen = at::detail::createCPUGenerator(99);
    std::map<std::string, at::Tensor> replaced;
    for (const auto& [name, w] : (*base)->weights->tensors()) {
      if (!ProjectionType(name).empty()) {
        const int64_t m = w.size(0), n = w.size(1);
        replaced[name] =
            w + 0.01 * at::matmul(at::randn({m, 4}, gen), at::randn({4, n}, gen)) + 0.0005 * at::randn({m, n}, gen);
      } else if (name == "model.embed_tokens.weight") {
        at::Tensor d = at::zeros_like(w);
        d.narrow(0, 65, 26).copy_(0.02 * at::randn({26, w.size(1)}, gen));
        replaced[name] = w + d;
      } else if (name == "model.norm.weight") {
        replaced[name] = w + 0.01 * at::randn(w.sizes(), gen);
      }
    }
    auto tuned = (*base)->weights->WithReplaced(replaced);
    ASSERT_TRUE(tuned.ok()) << tuned.status();
    const std::string tuned_dir = *dir_ + "/tuned";
    ASSERT_TRUE((*tuned)->Save(tuned_dir).ok());
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
      auto text = ReadFileToString(JoinPath(*dir_ + "/base1", f));
      ASSERT_TRUE(text.ok());
      ASSERT_TRUE(WriteFileAtomically(JoinPath(tuned_dir, f), *text).ok());
    }
    std::ofstream(*dir_ + "/calib.txt") << "The quick brown fox jumps over the lazy dog.\n"
                                        << "{not json, plain text}\n"
                                        << "Sphinx of black quartz, judge my vow.\n"
                                        << "Pack my box with five dozen liquor jugs.\n";
  }
  static void TearDownTestSuite() {
    std::system(("rm -rf '" + *dir_ + "'").c_str());
    delete dir_;
  }
  static std::string* dir_;
};
std::string* PackCliTest::dir_ = nullptr;

TEST_F(PackCliTest, CreateInspectVerifyApplyGenerate) {
  const std::string& d = *dir_;
  const std::string pack = d + "/demo.skillpack";
  CommandResult create = RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d, "/tuned --calib ", d,
                                             "/calib.txt --calib-samples 4 --calib-len 32 --name demo-pack",
                                             " --description 'a test pack' --tag test -o ", pack));
  ASSERT_EQ(create.exit_code, 0) << create.output;
  EXPECT_NE(create.output.find("calibration: 4 sequences"), std::string::npos) << create.output;
  EXPECT_NE(create.output.find("lowrank rank"), std::string::npos) << create.output;
  EXPECT_NE(create.output.find("ratio"), std::string::npos) << create.output;
  ASSERT_TRUE(PathExists(pack));

  CommandResult inspect = RunCli("pack inspect " + pack);
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(inspect.output.find("pack demo-pack"), std::string::npos) << inspect.output;
  EXPECT_NE(inspect.output.find("model.layers.1.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(inspect.output.find("sparse"), std::string::npos);
  CommandResult json = RunCli("pack inspect --json " + pack);
  ASSERT_EQ(json.exit_code, 0) << json.output;
  auto j = ParseJson(json.output, "inspect --json");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["name"], "demo-pack");
  EXPECT_EQ((*j)["description"], "a test pack");
  // Only the changed tensors are in the pack: 14 projections, embeddings, final norm.
  EXPECT_EQ((*j)["num_modules"], 16);

  CommandResult ok = RunCli(absl::StrCat("pack verify ", pack, " --base ", d, "/base1"));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  CommandResult wrong = RunCli(absl::StrCat("pack verify ", pack, " --base ", d, "/base2"));
  EXPECT_NE(wrong.exit_code, 0) << wrong.output;
  EXPECT_NE(wrong.output.find("made for base"), std::string::npos) << wrong.output;

  const std::string applied = d + "/applied";
  CommandResult apply = RunCli(absl::StrCat("pack apply --base ", d, "/base1 --pack ", pack, " -o ", applied));
  ASSERT_EQ(apply.exit_code, 0) << apply.output;
  // The applied weights are base + the decoded delta.
  auto base = LoadModel(d + "/base1", at::TensorOptions().dtype(at::kFloat));
  auto merged = LoadModel(applied, at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(base.ok() && merged.ok());
  auto read = ReadSkillPack(pack);
  ASSERT_TRUE(read.ok()) << read.status();
  std::map<std::string, at::Tensor> deltas;
  for (const ModuleDelta& m : read->modules) {
    auto dm = DecodeModuleDelta(m);
    ASSERT_TRUE(dm.ok()) << dm.status();
    deltas[m.name] = *dm;
  }
  for (const auto& [name, w] : (*base)->weights->tensors()) {
    const at::Tensor& got = *(*merged)->weights->Find(name);
    auto it = deltas.find(name);
    at::Tensor expect = it == deltas.end() ? w : w + it->second;
    EXPECT_TRUE(at::allclose(got, expect, 1e-6, 1e-7)) << name;
  }
  // The pack approximates the true delta.
  auto tuned = LoadModel(d + "/tuned", at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(tuned.ok());
  const char* q = "model.layers.0.self_attn.q_proj.weight";
  at::Tensor true_delta = *(*tuned)->weights->Find(q) - *(*base)->weights->Find(q);
  EXPECT_LT((deltas[q] - true_delta).norm().item<double>(), 0.8 * true_delta.norm().item<double>());

  CommandResult gen = RunCli("generate --model " + applied + " --prompt Hello --max-new-tokens 8 --ignore-eos");
  EXPECT_EQ(gen.exit_code, 0) << gen.output;

  // Applying to a base of another seed is refused.
  CommandResult bad_apply = RunCli(absl::StrCat("pack apply --base ", d, "/base2 --pack ", pack, " -o ", d, "/x"));
  EXPECT_NE(bad_apply.exit_code, 0);
  EXPECT_NE(bad_apply.output.find("made for base"), std::string::npos) << bad_apply.output;
}

// The budget holds for the file (header and manifest included), and
// `pack inspect` reports the file's bytes and its true ratio.
TEST_F(PackCliTest, BudgetModeMeetsTarget) {
  const std::string& d = *dir_;
  const std::string pack = d + "/budget.skillpack";
  CommandResult create =
      RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d,
                          "/tuned --target-ratio 0.25 --name budget --description 'under budget' -o ", pack));
  ASSERT_EQ(create.exit_code, 0) << create.output;
  EXPECT_NE(create.output.find("-byte budget"), std::string::npos) << create.output;
  auto base = LoadModel(d + "/base1", at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(base.ok());
  auto bytes = ReadFileToString(pack);
  ASSERT_TRUE(bytes.ok());
  const int64_t fp16 = Fp16DeltaBytes(*(*base)->weights);
  const double target = std::floor(0.25 * fp16);
  EXPECT_LE(static_cast<double>(bytes->size()), target);
  EXPECT_GE(static_cast<double>(bytes->size()), 0.98 * target);

  CommandResult json = RunCli("pack inspect --json " + pack);
  ASSERT_EQ(json.exit_code, 0) << json.output;
  auto j = ParseJson(json.output, "inspect --json");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["file_bytes"].get<int64_t>(), static_cast<int64_t>(bytes->size()));
  EXPECT_EQ((*j)["model_fp16_delta_bytes"].get<int64_t>(), fp16);
  EXPECT_NEAR((*j)["file_ratio"].get<double>(), static_cast<double>(bytes->size()) / fp16, 1e-9);
  EXPECT_EQ((*j)["header_bytes"].get<int64_t>() + (*j)["stored_bytes"].get<int64_t>(),
            static_cast<int64_t>(bytes->size()));
  CommandResult text = RunCli("pack inspect " + pack);
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find(absl::StrCat("file: ", bytes->size(), " bytes = 0.2")), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("header and manifest"), std::string::npos) << text.output;
}

// Two packs composed by module assignment (each gets its layers) equal base +
// each pack's delta on its own modules; merges write base + the merged delta.
TEST_F(PackCliTest, ApplyWithAssignmentAndMerge) {
  const std::string& d = *dir_;
  const std::string a = d + "/asg-a.skillpack", b = d + "/asg-b.skillpack";
  ASSERT_EQ(
      RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d, "/tuned --name alpha -o ", a)).exit_code, 0);
  ASSERT_EQ(RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d,
                                "/tuned --target-ratio 0.1 --name beta -o ", b))
                .exit_code,
            0);
  auto base = LoadModel(d + "/base1", at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(base.ok());
  std::map<std::string, at::Tensor> da, db;
  for (auto [path, out] : {std::make_pair(a, &da), std::make_pair(b, &db)}) {
    auto read = ReadSkillPack(path);
    ASSERT_TRUE(read.ok()) << read.status();
    for (const ModuleDelta& m : read->modules) (*out)[m.name] = *DecodeModuleDelta(m);
  }

  const std::string assigned = d + "/assigned";
  CommandResult apply =
      RunCli(absl::StrCat("pack apply --base ", d, "/base1 --pack ", a, " --pack ", b,
                          " --assign alpha=layers.0,embed_tokens --assign beta=layers.1,model.norm -o ", assigned));
  ASSERT_EQ(apply.exit_code, 0) << apply.output;
  auto got = LoadModel(assigned, at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(got.ok()) << got.status();
  for (const auto& [name, w] : (*base)->weights->tensors()) {
    at::Tensor expect = w.clone();
    const bool to_a = name.find("layers.0.") != std::string::npos || name == "model.embed_tokens.weight";
    const bool to_b = name.find("layers.1.") != std::string::npos || name == "model.norm.weight";
    if (to_a && da.count(name)) expect += da[name];
    if (to_b && db.count(name)) expect += db[name];
    EXPECT_TRUE(at::allclose(*(*got)->weights->Find(name), expect, 1e-6, 1e-7)) << name;
  }
  CommandResult overlap = RunCli(absl::StrCat("pack apply --base ", d, "/base1 --pack ", a, " --pack ", b,
                                              " --assign alpha=layers.0-1 --assign beta=mlp -o ", d, "/x"));
  EXPECT_EQ(overlap.exit_code, 2) << overlap.output;
  EXPECT_NE(overlap.output.find("assigned to both"), std::string::npos) << overlap.output;
  CommandResult unassigned = RunCli(absl::StrCat("pack apply --base ", d, "/base1 --pack ", a, " --pack ", b,
                                                 " --assign alpha=layers.0 -o ", d, "/x"));
  EXPECT_EQ(unassigned.exit_code, 2) << unassigned.output;
  EXPECT_NE(unassigned.output.find("'beta'"), std::string::npos) << unassigned.output;

  const std::string ta = d + "/merged-ta";
  CommandResult merge = RunCli(
      absl::StrCat("pack merge --base ", d, "/base1 --pack ", a, " --pack ", b, " --method ta --lambda 0.5 -o ", ta));
  ASSERT_EQ(merge.exit_code, 0) << merge.output;
  auto merged = LoadModel(ta, at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(merged.ok()) << merged.status();
  for (const auto& [name, w] : (*base)->weights->tensors()) {
    at::Tensor expect = w.clone();
    if (da.count(name)) expect += 0.5 * da[name];
    if (db.count(name)) expect += 0.5 * db[name];
    EXPECT_TRUE(at::allclose(*(*merged)->weights->Find(name), expect, 1e-5, 1e-6)) << name;
  }
  for (const char* method : {"ties --density 0.3", "dare --drop 0.5 --seed 3"}) {
    CommandResult r = RunCli(absl::StrCat("pack merge --base ", d, "/base1 --pack ", a, " --pack ", b, " --method ",
                                          method, " -o ", d, "/merged-other"));
    EXPECT_EQ(r.exit_code, 0) << method << ": " << r.output;
  }
  CommandResult one = RunCli(absl::StrCat("pack merge --base ", d, "/base1 --pack ", a, " --method ta -o ", d, "/x"));
  EXPECT_EQ(one.exit_code, 2) << one.output;
  CommandResult wrong_flag = RunCli(absl::StrCat("pack merge --base ", d, "/base1 --pack ", a, " --pack ", b,
                                                 " --method ta --drop 0.3 -o ", d, "/x"));
  EXPECT_EQ(wrong_flag.exit_code, 2) << wrong_flag.output;
  CommandResult bad_method =
      RunCli(absl::StrCat("pack merge --base ", d, "/base1 --pack ", a, " --pack ", b, " --method mean -o ", d, "/x"));
  EXPECT_EQ(bad_method.exit_code, 2) << bad_method.output;
  EXPECT_NE(bad_method.output.find("ta, ties or dare"), std::string::npos) << bad_method.output;
}

TEST_F(PackCliTest, BadInvocations) {
  const std::string& d = *dir_;
  CommandResult no_name =
      RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d, "/tuned -o ", d, "/n.sp"));
  EXPECT_EQ(no_name.exit_code, 2);
  EXPECT_NE(no_name.output.find("--name"), std::string::npos) << no_name.output;
  CommandResult bad_name =
      RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d, "/tuned --name BAD -o ", d, "/n.sp"));
  EXPECT_EQ(bad_name.exit_code, 2);
  EXPECT_NE(bad_name.output.find("invalid pack name"), std::string::npos) << bad_name.output;
  std::ofstream(d + "/cfg.json") << "{\"alpah\": 0.2}";
  CommandResult bad_cfg = RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d, "/tuned --config ", d,
                                              "/cfg.json --name x -o ", d, "/n.sp"));
  EXPECT_EQ(bad_cfg.exit_code, 2);
  EXPECT_NE(bad_cfg.output.find("alpah"), std::string::npos) << bad_cfg.output;
  CommandResult both = RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d,
                                           "/tuned --target-ratio 0.1 --target-bytes 5 --name x -o ", d, "/n.sp"));
  EXPECT_EQ(both.exit_code, 2) << both.output;
  CommandResult other = RunCli(absl::StrCat("pack create --base ", d, "/base1 --tuned ", d, "/base2 --calib ", d,
                                            "/calib.txt --name x --target-bytes 10 -o ", d, "/n.sp"));
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.output.find("cannot be met"), std::string::npos) << other.output;
  EXPECT_FALSE(PathExists(d + "/n.sp"));
  CommandResult missing = RunCli("pack inspect " + d + "/nope.skillpack");
  EXPECT_NE(missing.exit_code, 0);
  CommandResult garbage_file = RunCli("pack verify " + d + "/calib.txt --base " + d + "/base1");
  EXPECT_NE(garbage_file.exit_code, 0);
  CommandResult unknown = RunCli("pack frobnicate");
  EXPECT_EQ(unknown.exit_code, 2);
  CommandResult into_base = RunCli(absl::StrCat("pack apply --base ", d, "/base1 --pack x -o ", d, "/base1"));
  EXPECT_EQ(into_base.exit_code, 2) << into_base.output;
}

}  // namespace
}  // namespace skillpack
