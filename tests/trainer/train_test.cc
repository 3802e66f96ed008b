// Training core: schedule, SFT with accumulation, checkpoint resume, LoRA, DPO.
#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/model.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"
#include "trainer/data.h"
#include "trainer/dpo.h"
#include "trainer/sft.h"
#include "trainer/tasks/task.h"
#include "trainer/train_loop.h"
#include "trainer/trainable.h"

namespace skillpack {
namespace {

class TrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    dir_ = new std::string(::testing::TempDir() + "/train_test_tiny");
    TinyModelOptions o;
    o.layers = 2, o.hidden = 64, o.heads = 4, o.kv_heads = 2, o.seed = 11;
    ASSERT_TRUE(InitTinyModel(o, *dir_).ok());
  }
  void SetUp() override {
    model_ = *LoadModel(*dir_, at::kFloat);
    tok_ = *Tokenizer::FromModelDir(*dir_);
    end_id_ = tok_->eos_ids()[0];
  }
  std::vector<TokenizedSequence> TaskSequences(const std::string& name, TaskSplit split, int n, uint64_t seed) {
    auto task = *MakeTask(name);
    SequenceEncoder enc(*tok_, end_id_, 32);
    std::vector<TokenizedSequence> out;
    auto examples = GenerateTaskExamples(*task, split, n, seed, split == TaskSplit::kHeldOut);
    EXPECT_TRUE(examples.ok()) << examples.status();
    for (const auto& e : *examples) {
      out.push_back(*enc.Encode(e.prompt, e.response, false));
    }
    return out;
  }
  std::vector<TokenizedPair> TaskPairs(TaskSplit split, int n, uint64_t seed) {
    // sort: chosen = the sorted digits, rejected = the digits as given.
    auto task = *MakeTask("sort");
    SequenceEncoder enc(*tok_, end_id_, 32);
    std::vector<TokenizedPair> out;
    auto prefs = GenerateTaskPreferences(*task, split, n, seed, split == TaskSplit::kHeldOut);
    EXPECT_TRUE(prefs.ok()) << prefs.status();
    for (const auto& p : *prefs) {
      out.push_back({*enc.Encode(p.prompt, p.chosen, false), *enc.Encode(p.prompt, p.rejected, false)});
    }
    return out;
  }
  // The model after 3 plain DPO steps on `pairs` (one batch), so that a policy
  // differs from its reference and the preference term is not log 2; null on failure.
  std::shared_ptr<const ModelWeights> DpoWarmedPolicy(const std::vector<TokenizedPair>& pairs) {
    auto tw = *TrainableWeights::Create(model_->weights, {}, 0);
    DpoObjective warm(*model_->transformer, model_->weights, pairs, DpoConfig{});
    LoopConfig c = Loop(3, static_cast<int64_t>(pairs.size()));
    c.optim.lr = 2e-3;
    if (!RunTrainingLoop(*tw, warm, c, nullptr).ok()) return nullptr;
    return *tw->Merged();
  }

  // Sum of log-probabilities of `s`'s response tokens under `w`, alone in its batch.
  double SequenceLogProb(const ModelWeights& w, const TokenizedSequence& s) {
    return ResponseLogProbs(*model_->transformer, w, MakeTokenBatch(std::vector<const TokenizedSequence*>{&s}),
                            false)[0]
        .item<double>();
  }

  LoopConfig Loop(int64_t steps, int64_t batch, int64_t accum = 1) {
    LoopConfig c;
    c.steps = steps;
    c.batch_size = batch;
    c.grad_accum = accum;
    c.optim.lr = 3e-3;
    c.optim.warmup_steps = 2;
    c.seed = 3;
    return c;
  }
  static double MaxDiff(const TrainableWeights& a, const TrainableWeights& b) {
    double d = 0;
    for (size_t i = 0; i < a.parameters().size(); ++i) {
      d = std::max(d, (a.parameters()[i].second - b.parameters()[i].second).abs().max().item<double>());
    }
    return d;
  }

  static std::string* dir_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tok_;
  int32_t end_id_ = 0;
};
std::string* TrainTest::dir_ = nullptr;

TEST(ScheduleTest, WarmupThenCosineToTheFloor) {
  OptimizerConfig c;
  c.lr = 1e-3, c.warmup_steps = 10, c.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(ScheduledLr(c, 0, 100), 1e-4);
  EXPECT_DOUBLE_EQ(ScheduledLr(c, 9, 100), 1e-3);
  EXPECT_NEAR(ScheduledLr(c, 10, 100), 1e-3, 1e-12);
  EXPECT_NEAR(ScheduledLr(c, 99, 100), 1e-4, 1e-12);
  EXPECT_NEAR(ScheduledLr(c, 10 + 89 / 2.0, 100), 5.5e-4, 2e-5);
  for (int s = 11; s < 100; ++s) EXPECT_LE(ScheduledLr(c, s, 100), ScheduledLr(c, s - 1, 100));
}

TEST(ScheduleTest, ValidationNamesTheField) {
  LoopConfig c;
  c.optim.lr = 5;
  Status s = ValidateLoopConfig(c, "stages.sft");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("stages.sft.lr"), std::string::npos) << s;
  c = LoopConfig();
  c.optim.warmup_steps = c.steps + 1;
  EXPECT_NE(ValidateLoopConfig(c, "x").message().find("x.warmup_steps"), std::string::npos);
  c = LoopConfig();
  c.batch_size = 0;
  EXPECT_NE(ValidateLoopConfig(c, "x").message().find("x.batch_size"), std::string::npos);
  c = LoopConfig();
  c.max_epochs = -1;
  EXPECT_NE(ValidateLoopConfig(c, "x").message().find("x.max_epochs"), std::string::npos);
  c.max_epochs = std::nan("");
  EXPECT_NE(ValidateLoopConfig(c, "x").message().find("x.max_epochs"), std::string::npos);
}

TEST(ScheduleTest, MaxEpochsCapsTheStepsAndShortensTheWarmup) {
  LoopConfig c;
  c.steps = 40, c.batch_size = 32, c.optim.warmup_steps = 5;
  // No cap: the steps as given, and the passes they make.
  ScheduledSteps s = ScheduleFor(c, 146, 1);
  EXPECT_EQ(s.steps, 40);
  EXPECT_EQ(s.warmup_steps, 5);
  EXPECT_DOUBLE_EQ(s.epochs, 40.0 * 32 / 146);
  // Two passes over 146 pairs: ceil(292 / 32) = 10 steps, warmup 5 * 10 / 40.
  c.max_epochs = 2;
  s = ScheduleFor(c, 146, 1);
  EXPECT_EQ(s.steps, 10);
  EXPECT_EQ(s.warmup_steps, 1);
  EXPECT_DOUBLE_EQ(s.epochs, 10.0 * 32 / 146);
  // Accumulation and ranks count in the global batch: ceil(292 / 128).
  c.grad_accum = 2;
  EXPECT_EQ(ScheduleFor(c, 146, 2).steps, 3);
  c.grad_accum = 1;
  // A cap above the steps changes nothing; a tiny one still runs a step.
  EXPECT_EQ(ScheduleFor(c, 20000, 1).steps, 40);
  EXPECT_EQ(ScheduleFor(c, 20000, 1).warmup_steps, 5);
  c.max_epochs = 1e-6;
  EXPECT_EQ(ScheduleFor(c, 146, 1).steps, 1);
  EXPECT_EQ(ScheduleFor(c, 146, 1).warmup_steps, 0);
}

TEST_F(TrainTest, SftLowersTheLossAndAccumulationEqualsTheBigBatch) {
  auto seqs = TaskSequences("reverse", TaskSplit::kTrain, 256, 1);
  auto big = *TrainableWeights::Create(model_->weights, {}, 0);
  auto small = *TrainableWeights::Create(model_->weights, {}, 0);
  SftObjective obj_big(*model_->transformer, seqs), obj_small(*model_->transformer, seqs);
  auto r_big = RunTrainingLoop(*big, obj_big, Loop(8, 16, 1), nullptr);
  auto r_small = RunTrainingLoop(*small, obj_small, Loop(8, 8, 2), nullptr);
  ASSERT_TRUE(r_big.ok()) << r_big.status();
  ASSERT_TRUE(r_small.ok()) << r_small.status();
  EXPECT_LT(r_big->log.back().metrics.at("loss"), r_big->log.front().metrics.at("loss") - 1.0);
  EXPECT_NEAR(r_big->log.back().metrics.at("loss"), r_small->log.back().metrics.at("loss"), 1e-4);
  EXPECT_LT(MaxDiff(*big, *small), 1e-5);
  EXPECT_GT(r_big->tokens, 0);
  // The base weights are untouched.
  EXPECT_TRUE(at::equal(*model_->weights->Find("model.norm.weight"), at::ones({64})));
}

// A capped run takes the capped steps with the whole schedule compressed
// into them (its last step at the floor), equals an uncapped run asked for
// those steps and that warmup, and reports what it was asked for.
TEST_F(TrainTest, MaxEpochsRunsTheCappedScheduleToItsFloor) {
  auto seqs = TaskSequences("reverse", TaskSplit::kTrain, 24, 1);
  auto capped = *TrainableWeights::Create(model_->weights, {}, 0);
  auto plain = *TrainableWeights::Create(model_->weights, {}, 0);
  SftObjective obj_capped(*model_->transformer, seqs), obj_plain(*model_->transformer, seqs);
  LoopConfig c = Loop(40, 8);  // warmup 2
  c.max_epochs = 1.5;          // ceil(36 / 8) = 5 steps, warmup 2 * 5 / 40 = 0
  auto r = RunTrainingLoop(*capped, obj_capped, c, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->final_step, 5);
  ASSERT_EQ(r->log.size(), 5u);
  EXPECT_EQ(r->log.back().step, 5);
  EXPECT_DOUBLE_EQ(r->log.front().lr, c.optim.lr);  // no warmup left
  EXPECT_NEAR(r->log.back().lr, c.optim.lr * c.optim.min_lr_ratio, 1e-12);
  LoopConfig p = Loop(5, 8);
  p.optim.warmup_steps = 0;
  auto rp = RunTrainingLoop(*plain, obj_plain, p, nullptr);
  ASSERT_TRUE(rp.ok()) << rp.status();
  EXPECT_EQ(MaxDiff(*capped, *plain), 0.0);
  const Json report = LoopReport(*r, c, *capped);
  EXPECT_EQ(report["steps"], 5);
  EXPECT_EQ(report["steps_requested"], 40);
  EXPECT_EQ(report["max_epochs"], 1.5);
  EXPECT_DOUBLE_EQ(report["epochs"].get<double>(), 5.0 * 8 / 24);
  EXPECT_FALSE(LoopReport(*rp, p, *plain).contains("steps_requested"));
}

TEST_F(TrainTest, ResumedRunEqualsUninterruptedRun) {
  auto seqs = TaskSequences("sort", TaskSplit::kTrain, 128, 2);
  const std::string ckpt = ::testing::TempDir() + "/train_test_ckpt";
  std::filesystem::remove_all(ckpt);
  auto straight = *TrainableWeights::Create(model_->weights, {}, 0);
  SftObjective obj(*model_->transformer, seqs);
  ASSERT_TRUE(RunTrainingLoop(*straight, obj, Loop(6, 8), nullptr).ok());

  LoopConfig c = Loop(6, 8);
  c.checkpoint_dir = ckpt;
  c.checkpoint_every = 2;
  c.stop_at_step = 3;  // "crash" after step 3 (checkpointed at 2 and 3)
  auto first = *TrainableWeights::Create(model_->weights, {}, 0);
  auto r1 = RunTrainingLoop(*first, obj, c, nullptr);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->final_step, 3);
  c.stop_at_step = -1;
  auto second = *TrainableWeights::Create(model_->weights, {}, 0);  // a fresh process
  auto r2 = RunTrainingLoop(*second, obj, c, nullptr);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->resumed_from, 3);
  EXPECT_EQ(r2->final_step, 6);
  EXPECT_EQ(r2->log.size(), 6u);  // earlier steps' log comes back from the checkpoint
  EXPECT_LT(MaxDiff(*straight, *second), 1e-6);
  // Only keep_checkpoints (2) remain.
  int dirs = 0;
  for (const auto& e : std::filesystem::directory_iterator(ckpt)) dirs += e.is_directory();
  EXPECT_EQ(dirs, 2);

  // A checkpoint of another configuration is refused, naming the mismatch.
  LoraConfig lora;
  lora.rank = 2;
  auto other = *TrainableWeights::Create(model_->weights, lora, 0);
  auto bad = RunTrainingLoop(*other, obj, c, nullptr);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove_all(ckpt);
}

TEST_F(TrainTest, LoraForwardIsWxPlusScaledBAxAndMergedExportMatches) {
  LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8;
  auto tw = *TrainableWeights::Create(model_->weights, lora, 7);
  EXPECT_EQ(tw->parameters().size(), 2u * 7 * 2);  // A and B for 7 projections x 2 layers
  auto seqs = TaskSequences("reverse", TaskSplit::kTrain, 128, 5);
  SftObjective obj(*model_->transformer, seqs);
  auto held = TaskSequences("reverse", TaskSplit::kHeldOut, 32, 6);
  const double held_before = *ResponseLoss(*model_->transformer, *model_->weights, held, 32);
  LoopConfig c = Loop(20, 16);
  c.optim.lr = 1e-2;
  auto r = RunTrainingLoop(*tw, obj, c, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  // Embeddings and lm_head stay random, so LoRA learns slower than full tuning.
  EXPECT_LT(r->log.back().metrics.at("loss"), r->log.front().metrics.at("loss") - 0.2);
  EXPECT_LT(*ResponseLoss(*model_->transformer, **tw->Merged(), held, 32), held_before - 0.2);
  // Base weights are frozen.
  for (const auto& [name, t] : tw->base().tensors()) {
    EXPECT_TRUE(at::equal(t, *model_->weights->Find(name))) << name;
  }

  // One projection by hand: (W + s B A) x == W x + s B (A x).
  const std::string q = "model.layers.1.self_attn.q_proj.weight";
  at::Tensor a, b;
  for (const auto& [name, p] : tw->parameters()) {
    if (name == q + ".lora_A") a = p.detach();
    if (name == q + ".lora_B") b = p.detach();
  }
  ASSERT_TRUE(a.defined() && b.defined());
  EXPECT_GT(b.abs().max().item<double>(), 0);  // B moved off zero
  auto merged = *tw->Merged();
  at::Tensor x = at::randn({5, 64});
  const double s = lora.alpha / lora.rank;
  at::Tensor want = at::linear(x, *model_->weights->Find(q)) + s * at::linear(at::linear(x, a), b);
  EXPECT_LT((at::linear(x, *merged->Find(q)) - want).abs().max().item<double>(), 1e-5);

  // Adapter logits vs the exported merged folder, reloaded from disk.
  const std::string out = ::testing::TempDir() + "/train_test_lora_merged";
  ASSERT_TRUE(ExportModelFolder(*merged, *dir_, out).ok());
  auto reloaded = LoadModel(out, at::kFloat);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  ASSERT_TRUE(Tokenizer::FromModelDir(out).ok());
  TokenBatch batch = MakeTokenBatch({&seqs[0], &seqs[1], &seqs[2]});
  at::NoGradGuard no_grad;
  at::Tensor adapter = model_->transformer->Forward(**tw->ForwardWeights(), batch.tokens, batch.attention_mask);
  at::Tensor exported = (*reloaded)->transformer->Forward(*(*reloaded)->weights, batch.tokens, batch.attention_mask);
  EXPECT_LT((adapter - exported).abs().max().item<double>(), 1e-5);
  std::filesystem::remove_all(out);
}

TEST_F(TrainTest, DpoRaisesHeldOutMarginAndPreferenceAccuracy) {
  auto train = TaskPairs(TaskSplit::kTrain, 512, 8);
  auto held = TaskPairs(TaskSplit::kHeldOut, 64, 9);
  DpoConfig cfg;  // beta 0.1
  auto reference = model_->weights;
  auto tw = *TrainableWeights::Create(reference, {}, 0);
  auto before = EvaluatePreferences(*model_->transformer, *reference, *reference, held, cfg, 64);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_NEAR(before->reward_margin, 0, 1e-9);  // policy == reference
  DpoObjective obj(*model_->transformer, reference, train, cfg);
  LoopConfig c = Loop(30, 16);
  c.optim.lr = 2e-3;
  auto r = RunTrainingLoop(*tw, obj, c, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(r->log.back().metrics.at("loss"), std::log(2.0) - 0.1);
  auto after = EvaluatePreferences(*model_->transformer, **tw->Merged(), *reference, held, cfg, 64);
  ASSERT_TRUE(after.ok());
  EXPECT_GT(after->reward_margin, before->reward_margin + 0.5);
  EXPECT_GT(after->reward_accuracy, 0.9);
  EXPECT_GT(after->logp_accuracy, before->logp_accuracy);
  EXPECT_LT(after->loss, before->loss);
}

TEST_F(TrainTest, DpoSftWeightAddsTheChosenResponsesMeanNll) {
  auto pairs = TaskPairs(TaskSplit::kTrain, 6, 8);
  auto reference = model_->weights;
  auto policy = DpoWarmedPolicy(pairs);
  ASSERT_TRUE(policy != nullptr);
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5};
  DpoConfig plain_cfg;
  DpoConfig rpo_cfg;
  rpo_cfg.sft_weight = 0.7;
  DpoObjective plain(*model_->transformer, reference, pairs, plain_cfg);
  DpoObjective rpo(*model_->transformer, reference, pairs, rpo_cfg);
  at::NoGradGuard no_grad;
  auto p = plain.Loss(*policy, all, 6.0);
  auto r = rpo.Loss(*policy, all, 6.0);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(r.ok()) << r.status();
  // The chosen responses' mean NLL per token, by hand, one sequence at a time.
  double nll = 0;
  for (const TokenizedPair& pair : pairs)
    nll += -SequenceLogProb(*policy, pair.chosen) / pair.chosen.num_response_tokens();
  nll /= 6.0;
  EXPECT_GT(nll, 0.1);
  EXPECT_NEAR(p->sums.at("chosen_nll") / 6.0, nll, 1e-4);
  EXPECT_NEAR(r->sums.at("chosen_nll") / 6.0, nll, 1e-4);
  EXPECT_NEAR(p->sums.at("loss"), r->sums.at("loss") - 0.7 * r->sums.at("chosen_nll"), 1e-4);
  EXPECT_NEAR(r->loss.item<double>(), p->loss.item<double>() + 0.7 * nll, 1e-4);
  EXPECT_NE(p->loss.item<double>(), std::log(2.0));
}

// DPOP's penalty, by hand: with the roles swapped (the warmed policy as the
// reference), the chosen rewards are negative, so the penalty acts; with the
// warmed policy scored against the base it is positive where DPO raised y+.
TEST_F(TrainTest, DpopLowersTheMarginByLambdaTimesTheChosenRewardBelowZero) {
  auto pairs = TaskPairs(TaskSplit::kTrain, 6, 8);
  auto warmed = DpoWarmedPolicy(pairs);
  ASSERT_TRUE(warmed != nullptr);
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5};
  DpoConfig cfg;
  cfg.dpop_lambda = 5.0;
  for (bool swapped : {true, false}) {
    SCOPED_TRACE(swapped ? "policy below the reference" : "policy above the reference");
    const std::shared_ptr<const ModelWeights> reference = swapped ? warmed : model_->weights;
    const ModelWeights& policy = swapped ? *model_->weights : *warmed;
    DpoObjective dpop(*model_->transformer, reference, pairs, cfg);
    DpoObjective plain(*model_->transformer, reference, pairs, DpoConfig{});
    at::NoGradGuard no_grad;
    auto got = dpop.Loss(policy, all, 6.0);
    auto base = plain.Loss(policy, all, 6.0);
    ASSERT_TRUE(got.ok() && base.ok()) << got.status();
    double loss = 0, plain_loss = 0;
    int penalised = 0;
    for (const TokenizedPair& pair : pairs) {
      const double c = 0.1 * (SequenceLogProb(policy, pair.chosen) - SequenceLogProb(*reference, pair.chosen));
      const double r = 0.1 * (SequenceLogProb(policy, pair.rejected) - SequenceLogProb(*reference, pair.rejected));
      penalised += c < 0;
      loss += std::log1p(std::exp(-(c - r - 5.0 * std::max(0.0, -c))));
      plain_loss += std::log1p(std::exp(-(c - r)));
    }
    if (swapped) {
      EXPECT_GE(penalised, 4) << "the chosen answers are less likely than under the warmed reference";
      EXPECT_GT(got->sums.at("loss"), base->sums.at("loss") + 0.01);
    }
    EXPECT_NEAR(got->sums.at("loss"), loss, 1e-4);
    EXPECT_NEAR(base->sums.at("loss"), plain_loss, 1e-4);
    // The reported margin is DPO's, without the penalty.
    EXPECT_NEAR(got->sums.at("reward_margin"), base->sums.at("reward_margin"), 1e-6);
  }
}

TEST(DpoFirstDifferenceTest, CutsAtTheFirstDifferingResponseToken) {
  TokenizedPair p;
  p.chosen = {{1, 5, 6, 10, 11, 12, 2}, 3};  // prompt 1 5 6, response 10 11 12 <end>
  p.rejected = {{1, 5, 6, 10, 11, 13, 14, 2}, 3};
  TokenizedPair f = FirstDifference(p);
  EXPECT_EQ(f.chosen.tokens, (std::vector<int32_t>{1, 5, 6, 10, 11, 12}));
  EXPECT_EQ(f.rejected.tokens, (std::vector<int32_t>{1, 5, 6, 10, 11, 13}));
  EXPECT_EQ(f.chosen.prompt_len, 5);
  EXPECT_EQ(f.rejected.prompt_len, 5);
  EXPECT_EQ(f.chosen.num_response_tokens(), 1);
  // The first response token differs: the prompt alone is kept.
  p.rejected = {{1, 5, 6, 20, 2}, 3};
  f = FirstDifference(p);
  EXPECT_EQ(f.chosen.tokens, (std::vector<int32_t>{1, 5, 6, 10}));
  EXPECT_EQ(f.rejected.tokens, (std::vector<int32_t>{1, 5, 6, 20}));
  // Unchanged: equal responses, one a prefix of the other, different prompts.
  for (const TokenizedSequence& r :
       {TokenizedSequence{{1, 5, 6, 10, 11, 12, 2}, 3}, TokenizedSequence{{1, 5, 6, 10, 11}, 3},
        TokenizedSequence{{1, 5, 7, 10, 2}, 3}, TokenizedSequence{{1, 5, 6, 10, 2}, 2}}) {
    p.rejected = r;
    f = FirstDifference(p);
    EXPECT_EQ(f.chosen.tokens, p.chosen.tokens);
    EXPECT_EQ(f.rejected.tokens, r.tokens);
    EXPECT_EQ(f.rejected.prompt_len, r.prompt_len);
  }
}

TEST_F(TrainTest, DpoFirstDifferenceScoresTheDifferingTokenAndTheWholeChosenNll) {
  auto pairs = TaskPairs(TaskSplit::kTrain, 4, 8);
  auto reference = model_->weights;
  auto policy = DpoWarmedPolicy(pairs);
  ASSERT_TRUE(policy != nullptr);
  DpoConfig cfg;
  cfg.first_difference = true;
  cfg.sft_weight = 0.5;
  DpoObjective obj(*model_->transformer, reference, pairs, cfg);
  at::NoGradGuard no_grad;
  auto got = obj.Loss(*policy, {0, 1, 2, 3}, 4.0);
  ASSERT_TRUE(got.ok()) << got.status();
  double chosen_reward = 0, nll = 0, loss = 0;
  int cut = 0;
  for (const TokenizedPair& pair : pairs) {
    TokenizedPair f = FirstDifference(pair);
    cut += f.chosen.num_response_tokens() == 1;
    const double c = 0.1 * (SequenceLogProb(*policy, f.chosen) - SequenceLogProb(*reference, f.chosen));
    const double r = 0.1 * (SequenceLogProb(*policy, f.rejected) - SequenceLogProb(*reference, f.rejected));
    const double whole_nll = -SequenceLogProb(*policy, pair.chosen) / pair.chosen.num_response_tokens();
    chosen_reward += c;
    nll += whole_nll;
    loss += std::log1p(std::exp(-(c - r))) + 0.5 * whole_nll;
  }
  EXPECT_EQ(cut, 4) << "task pairs differ within their responses";
  EXPECT_NE(chosen_reward, 0.0);
  EXPECT_NEAR(got->sums.at("chosen_reward"), chosen_reward, 1e-4);
  EXPECT_NEAR(got->sums.at("chosen_nll"), nll, 1e-4);
  EXPECT_NEAR(got->sums.at("loss"), loss, 1e-4);
}

TEST_F(TrainTest, DpoLengthNormalisationUsesPerTokenMeans) {
  auto held = TaskPairs(TaskSplit::kHeldOut, 8, 9);
  std::vector<const TokenizedSequence*> seqs = {&held[0].chosen};
  TokenBatch b = MakeTokenBatch(seqs);
  at::NoGradGuard no_grad;
  const double sum = ResponseLogProbs(*model_->transformer, *model_->weights, b, false)[0].item<double>();
  const double mean = ResponseLogProbs(*model_->transformer, *model_->weights, b, true)[0].item<double>();
  EXPECT_NEAR(mean * held[0].chosen.num_response_tokens(), sum, 1e-4);
  EXPECT_LT(sum, 0);
}

}  // namespace
}  // namespace skillpack
