// `skillpack model ...` and `skillpack generate`: offline model commands.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "absl/strings/numbers.h"
#include "cli/cli.h"
#include "core/args.h"
#include "core/chat_template.h"
#include "core/cpu_threads.h"
#include "core/generator.h"
#include "core/kv_cache.h"
#include "core/model.h"
#include "core/tiny_model.h"
#include "core/tokenizer.h"

namespace skillpack {
namespace {

Status InitTiny(const Args& a) {
  TinyModelOptions o;
  ASSIGN_OR_RETURN(std::string out, a.String("out"));
  ASSIGN_OR_RETURN(o.layers, a.IntOr("layers", o.layers));
  ASSIGN_OR_RETURN(o.hidden, a.IntOr("hidden", o.hidden));
  ASSIGN_OR_RETURN(o.heads, a.IntOr("heads", o.heads));
  ASSIGN_OR_RETURN(o.kv_heads, a.IntOr("kv-heads", o.kv_heads));
  ASSIGN_OR_RETURN(o.intermediate, a.IntOr("intermediate", o.intermediate));
  ASSIGN_OR_RETURN(o.vocab, a.IntOr("vocab", o.vocab));
  ASSIGN_OR_RETURN(o.max_positions, a.IntOr("max-positions", o.max_positions));
  ASSIGN_OR_RETURN(int64_t seed, a.IntOr("seed", 0));
  o.seed = static_cast<uint64_t>(seed);
  o.tie_embeddings = a.Bool("tie-embeddings");
  RETURN_IF_ERROR(a.CheckAllUsed());
  RETURN_IF_ERROR(InitTinyModel(o, out));
  ASSIGN_OR_RETURN(ModelConfig c, TinyModelConfig(o));
  std::printf("wrote %s: %lld layers, hidden %lld, %lld/%lld heads, vocab %lld, %.2fM parameters\n", out.c_str(),
              static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.num_attention_heads), static_cast<long long>(c.num_key_value_heads),
              static_cast<long long>(c.vocab_size), c.NumParameters() / 1e6);
  return absl::OkStatus();
}

StatusOr<SamplingParams> SamplingFromArgs(const Args& a) {
  SamplingParams p;
  ASSIGN_OR_RETURN(int64_t n, a.IntOr("max-new-tokens", p.max_new_tokens));
  p.max_new_tokens = static_cast<int32_t>(n);
  ASSIGN_OR_RETURN(double t, a.DoubleOr("temperature", 0.0));
  p.temperature = static_cast<float>(t);
  ASSIGN_OR_RETURN(int64_t k, a.IntOr("top-k", 0));
  p.top_k = static_cast<int32_t>(k);
  ASSIGN_OR_RETURN(double tp, a.DoubleOr("top-p", 1.0));
  p.top_p = static_cast<float>(tp);
  ASSIGN_OR_RETURN(double mp, a.DoubleOr("min-p", 0.0));
  p.min_p = static_cast<float>(mp);
  ASSIGN_OR_RETURN(double rp, a.DoubleOr("repetition-penalty", 1.0));
  p.repetition_penalty = static_cast<float>(rp);
  if (a.Has("seed")) {
    ASSIGN_OR_RETURN(int64_t seed, a.IntOr("seed", 0));
    p.seed = static_cast<uint64_t>(seed);
  }
  p.stop = a.Strings("stop");
  for (const std::string& s : a.Strings("stop-token-id")) {
    int32_t id;
    if (!absl::SimpleAtoi(s, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("--stop-token-id must be an integer, got '", s, "'"));
    }
    p.stop_token_ids.push_back(id);
  }
  p.ignore_eos = a.Bool("ignore-eos");
  p.logprobs = a.Bool("logprobs");
  return p;
}

Status Generate(const Args& a) {
  ASSIGN_OR_RETURN(std::string dir, a.String("model"));
  ASSIGN_OR_RETURN(int64_t threads, a.IntOr("threads", 0));
  SetIntraOpThreads(threads);
  ASSIGN_OR_RETURN(SamplingParams params, SamplingFromArgs(a));
  std::string prompt = a.StringOr("prompt", "");
  std::string chat = a.StringOr("chat", "");
  std::string system = a.StringOr("system", "");
  RETURN_IF_ERROR(a.CheckAllUsed());
  if (prompt.empty() == chat.empty()) {
    return absl::InvalidArgumentError("give exactly one of --prompt and --chat");
  }
  auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(auto model, LoadModel(dir, at::TensorOptions().dtype(at::kFloat)));
  ASSIGN_OR_RETURN(auto tok, Tokenizer::FromModelDir(dir));
  std::vector<int32_t> ids;
  if (!chat.empty()) {
    ASSIGN_OR_RETURN(ChatTemplateFamily fam, DetectChatTemplateFamily(tok->chat_template()));
    std::vector<ChatMessage> msgs;
    if (!system.empty()) msgs.push_back({"system", system});
    msgs.push_back({"user", chat});
    ASSIGN_OR_RETURN(std::string text, ApplyChatTemplate(fam, msgs, /*add_generation_prompt=*/true));
    ids = tok->Encode(text, /*parse_special=*/true, /*add_bos=*/false);
  } else {
    ids = tok->Encode(prompt, /*parse_special=*/true, /*add_bos=*/tok->bos_id().has_value());
  }
  const int64_t max_len = static_cast<int64_t>(ids.size()) + params.max_new_tokens;
  ASSIGN_OR_RETURN(auto cache, KvCache::Create(model->config, 1, max_len, model->weights->embed_tokens().options()));
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  GenerationRequest req{ids, params, model->weights, /*delta=*/nullptr};
  GenerationEngine engine(*model->transformer, *tok, *cache, EosIds(model->config, *tok));
  GenerationOutput result;
  ASSIGN_OR_RETURN(int64_t id, engine.Add(std::move(req), [&](const GenerationEvent& e) {
    std::fwrite(e.new_text.data(), 1, e.new_text.size(), stdout);
    std::fflush(stdout);
    if (e.done) result = *e.output;
  }));
  (void)id;
  while (engine.HasWork()) engine.Step();
  std::printf("\n");
  std::fflush(stdout);
  if (result.finish_reason == FinishReason::kError) return result.status;
  const double decode_s = result.total_seconds - result.time_to_first_token_s;
  const size_t n = result.tokens.size();
  std::fprintf(stderr,
               "load %.2f s | prompt %d tokens, prefill %.3f s | %zu tokens generated, %.1f tokens/s"
               " (decode) | finish: %s\n",
               load_s, result.prompt_tokens, result.time_to_first_token_s, n,
               n > 1 && decode_s > 0 ? (n - 1) / decode_s : 0.0, FinishReasonName(result.finish_reason));
  if (params.logprobs) {
    for (size_t i = 0; i < n; ++i) {
      std::fprintf(stderr, "token %d logprob %.4f\n", result.tokens[i], result.logprobs[i]);
    }
  }
  return absl::OkStatus();
}

}  // namespace

int RunModelCommand(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] != "init-tiny") {
    std::fprintf(stderr, "usage: skillpack model init-tiny --out DIR [flags]\n");
    return 2;
  }
  auto a = Args::Parse(std::vector<std::string>(argv.begin() + 1, argv.end()), {"tie-embeddings"});
  if (!a.ok()) return CliFail(a.status(), "model init-tiny");
  Status s = InitTiny(*a);
  return s.ok() ? 0 : CliFail(s, "model init-tiny");
}

int RunGenerateCommand(const std::vector<std::string>& argv) {
  auto a = Args::Parse(argv, {"ignore-eos", "logprobs"});
  if (!a.ok()) return CliFail(a.status(), "generate");
  Status s = Generate(*a);
  return s.ok() ? 0 : CliFail(s, "generate");
}

}  // namespace skillpack
