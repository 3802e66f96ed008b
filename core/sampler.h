// Token sampling for one generated sequence: SamplingParams (the per-request
// knobs, validated by ValidateSamplingParams) and Sampler, which turns one step's
// logits (a host float array of vocab size) into the next token id.
#ifndef SKILLPACK_CORE_SAMPLER_H_
#define SKILLPACK_CORE_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/status.h"

namespace skillpack {

// Limits enforced by ValidateSamplingParams.
inline constexpr int32_t kMaxNewTokensLimit = 1 << 20;
inline constexpr float kMaxTemperature = 100.0f;
inline constexpr float kMaxRepetitionPenalty = 100.0f;
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

// Per-request sampling settings. Defaults sample from the full softmax.
struct SamplingParams {
  // Most tokens to generate; in [1, kMaxNewTokensLimit].
  int32_t max_new_tokens = 64;
  // Logits are divided by this; 0 => greedy (argmax). In [0, kMaxTemperature].
  float temperature = 1.0f;
  // Keep only the top_k highest-logit tokens; 0 => off.
  int32_t top_k = 0;
  // Nucleus: keep the smallest set of most probable tokens whose probability
  // mass is >= top_p (always >= 1 token). In (0, 1]; 1 => off.
  float top_p = 1.0f;
  // Drop tokens with p < min_p * p_max. In [0, 1]; 0 => off.
  float min_p = 0.0f;
  // CTRL / HF style: for every token id present in the history (prompt and
  // generated so far), logit > 0 ? logit / penalty : logit * penalty.
  // In (0, kMaxRepetitionPenalty]; 1 => off.
  float repetition_penalty = 1.0f;
  // Same seed + same logits + same history => same tokens. Unset => seeded
  // from std::random_device.
  std::optional<uint64_t> seed;
  // Stop strings (see StopMatcher): non-empty, at most kMaxStopStrings, each at
  // most kMaxStopStringBytes bytes.
  std::vector<std::string> stop;
  // Generation ends when one of these is sampled, in addition to the model's
  // eos ids unless ignore_eos. Each in [0, vocab_size).
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Whether the caller should report SampleResult::logprob to the client.
  bool logprobs = false;
};

// Returns OK, or INVALID_ARGUMENT whose message names the first offending
// field and its value, e.g. "temperature must be in [0, 100], got -1".
// NaN values are rejected. vocab_size must be positive.
Status ValidateSamplingParams(const SamplingParams& p, int32_t vocab_size);

struct SampleResult {
  int32_t token;
  // log_softmax of the RAW logits (before repetition penalty, temperature and
  // filters; NaN read as -inf) at `token`: the model's own log-probability.
  // -inf when the token's raw logit is -inf (e.g. every logit was -inf/NaN).
  float logprob;
};

// Draws tokens for one sequence. Holds the RNG (std::mt19937_64) and scratch
// buffers, so it is not thread-safe: use one Sampler per sequence.
// REQUIRES: params passed ValidateSamplingParams (Sample clamps nothing else).
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;
  Sampler(Sampler&&) = default;
  Sampler& operator=(Sampler&&) = default;

  // Picks the next token from `logits` (vocab_size host floats). `history` is
  // the prompt plus the tokens generated so far; ids outside [0, vocab_size)
  // are ignored. Processing order (as HF): repetition penalty -> temperature
  // -> top_k -> top_p -> min_p -> sample; top_p and min_p see the softmax of
  // what the previous filters kept. temperature == 0 => greedy: argmax after
  // the repetition penalty, ties -> lowest id. NaN logits count as -inf and
  // +inf as the largest finite float. If every logit is -inf/NaN the result is
  // token 0 with logprob -inf. Ties at a top_k / top_p boundary keep the
  // lower id. Deterministic for a given seed on a given standard library.
  // Cost: O(V) expected (selection, never a full sort of the vocabulary).
  // REQUIRES: logits != nullptr, vocab_size >= 1 (else returns {0, -inf}).
  SampleResult Sample(const float* logits, int32_t vocab_size, const std::vector<int32_t>& history);

  const SamplingParams& params() const { return params_; }

 private:
  // Uniform double in [0, 1) from 53 bits of rng_ (portable across libraries,
  // unlike std::uniform_real_distribution).
  double NextUniform();

  struct Candidate {
    int32_t id;
    float logit;   // after penalty and temperature
    float weight;  // exp(logit - best surviving logit)
  };

  SamplingParams params_;
  std::mt19937_64 rng_;
  // Scratch reused across steps to avoid O(V) allocations per token.
  std::vector<float> work_;      // processed logits, indexed by id
  std::vector<Candidate> cand_;  // tokens still in the running
  std::vector<uint8_t> seen_;    // repetition-penalty marks, all 0 between calls
};

}  // namespace skillpack

#endif  // SKILLPACK_CORE_SAMPLER_H_
