#include "core/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace skillpack {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kMaxFloat = std::numeric_limits<float>::max();

// NaN -> -inf, +inf -> largest finite float, so max/exp arithmetic stays
// well defined.
inline float Sanitize(float x) {
  if (std::isnan(x)) return kNegInf;
  if (x > kMaxFloat) return kMaxFloat;
  return x;
}

Status RangeError(absl::string_view field, absl::string_view range, double got) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be in ", range, ", got ", got));
}

}  // namespace

Status ValidateSamplingParams(const SamplingParams& p, int32_t vocab_size) {
  if (vocab_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_size must be positive, got ", vocab_size));
  }
  if (p.max_new_tokens < 1 || p.max_new_tokens > kMaxNewTokensLimit) {
    return RangeError("max_new_tokens", absl::StrCat("[1, ", kMaxNewTokensLimit, "]"), p.max_new_tokens);
  }
  if (!(p.temperature >= 0.0f && p.temperature <= kMaxTemperature)) {
    return RangeError("temperature", absl::StrCat("[0, ", kMaxTemperature, "]"), p.temperature);
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", p.top_k));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return RangeError("top_p", "(0, 1]", p.top_p);
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return RangeError("min_p", "[0, 1]", p.min_p);
  }
  if (!(p.repetition_penalty > 0.0f && p.repetition_penalty <= kMaxRepetitionPenalty)) {
    return RangeError("repetition_penalty", absl::StrCat("(0, ", kMaxRepetitionPenalty, "]"), p.repetition_penalty);
  }
  if (p.stop.size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop must hold at most ", kMaxStopStrings, " strings, got ", p.stop.size()));
  }
  for (size_t i = 0; i < p.stop.size(); ++i) {
    if (p.stop[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] must not be empty"));
    }
    if (p.stop[i].size() > kMaxStopStringBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop[", i, "] must be at most ", kMaxStopStringBytes, " bytes, got ", p.stop[i].size()));
    }
  }
  for (size_t i = 0; i < p.stop_token_ids.size(); ++i) {
    const int32_t id = p.stop_token_ids[i];
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop_token_ids[", i, "] must be in [0, ", vocab_size, "), got ", id));
    }
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : params_(params) {
  uint64_t seed;
  if (params_.seed.has_value()) {
    seed = *params_.seed;
  } else {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ static_cast<uint64_t>(rd());
  }
  rng_.seed(seed);
}

double Sampler::NextUniform() { return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0); }

SampleResult Sampler::Sample(const float* logits, int32_t vocab_size, const std::vector<int32_t>& history) {
  if (logits == nullptr || vocab_size <= 0) return {0, kNegInf};
  const size_t v = static_cast<size_t>(vocab_size);

  // Raw log-sum-exp for the reported logprob.
  work_.resize(v);
  float raw_max = kNegInf;
  for (size_t i = 0; i < v; ++i) {
    work_[i] = Sanitize(logits[i]);
    raw_max = std::max(raw_max, work_[i]);
  }
  if (raw_max == kNegInf) return {0, kNegInf};
  // log of the raw softmax denominator; computed lazily (NaN until known) so
  // the common unpenalised, unfiltered T=1 path reuses the sampling weights.
  double raw_log_norm = std::numeric_limits<double>::quiet_NaN();
  auto result = [&](int32_t token) {
    if (std::isnan(raw_log_norm)) {
      double raw_sum = 0.0;
      for (size_t i = 0; i < v; ++i) {
        raw_sum += std::exp(Sanitize(logits[i]) - raw_max);
      }
      raw_log_norm = raw_max + std::log(raw_sum);
    }
    const float raw = Sanitize(logits[token]);
    const float lp = raw == kNegInf ? kNegInf : static_cast<float>(raw - raw_log_norm);
    return SampleResult{token, lp};
  };

  // Repetition penalty, once per distinct id in the history.
  const float penalty = params_.repetition_penalty;
  bool penalised = false;
  if (penalty != 1.0f && !history.empty()) {
    seen_.resize(v, 0);
    for (int32_t id : history) {
      if (id < 0 || id >= vocab_size || seen_[id]) continue;
      seen_[id] = 1;
      penalised = true;
      float& x = work_[id];
      x = Sanitize(x > 0.0f ? x / penalty : x * penalty);
    }
    for (int32_t id : history) {
      if (id >= 0 && id < vocab_size) seen_[id] = 0;
    }
  }

  if (params_.temperature == 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab_size; ++i) {
      if (work_[i] > work_[best]) best = i;
    }
    return result(best);
  }

  // Temperature; candidates are the tokens with finite processed logits.
  const float inv_t = 1.0f / params_.temperature;
  cand_.clear();
  for (int32_t i = 0; i < vocab_size; ++i) {
    float x = work_[i];
    if (x == kNegInf) continue;
    if (inv_t != 1.0f) x = Sanitize(x * inv_t);
    if (x == kNegInf) continue;
    cand_.push_back({i, x, 0.0f});
  }
  if (cand_.empty()) return result(0);  // unreachable: raw_max is finite

  // Canonical order: higher logit first, ties -> lower id. Selections below
  // keep the best elements under this order, so boundary ties keep low ids.
  auto better = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };

  // Whether cand_ still holds every finite raw logit unchanged.
  bool raw_candidates = !penalised && inv_t == 1.0f;
  const size_t k = static_cast<size_t>(params_.top_k);
  if (k > 0 && k < cand_.size()) {
    raw_candidates = false;
    std::nth_element(cand_.begin(), cand_.begin() + (k - 1), cand_.end(), better);
    cand_.resize(k);
  }

  // Weights relative to the best survivor (its weight is 1).
  float max_logit = kNegInf;
  for (const Candidate& c : cand_) max_logit = std::max(max_logit, c.logit);
  double total = 0.0;
  for (Candidate& c : cand_) {
    c.weight = std::exp(c.logit - max_logit);
    total += c.weight;
  }
  if (raw_candidates) raw_log_norm = max_logit + std::log(total);

  if (params_.top_p < 1.0f) {
    // Smallest canonical-order prefix with mass >= top_p * total, found by a
    // quickselect on mass: O(V) expected, no full sort. Invariant: the
    // answer lies in [lo, hi) and cand_[0, lo) (mass `taken`) is in it.
    const double target = static_cast<double>(params_.top_p) * total;
    size_t lo = 0;
    size_t hi = cand_.size();
    double taken = 0.0;
    size_t keep = cand_.size();
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      std::nth_element(cand_.begin() + lo, cand_.begin() + mid, cand_.begin() + hi, better);
      double upper = 0.0;  // mass of cand_[lo, mid)
      for (size_t i = lo; i < mid; ++i) upper += cand_[i].weight;
      if (taken + upper >= target) {
        hi = mid;  // the prefix ends before mid
        keep = mid;
      } else if (taken + upper + cand_[mid].weight >= target) {
        keep = mid + 1;
        break;
      } else {
        taken += upper + cand_[mid].weight;
        lo = mid + 1;
      }
    }
    keep = std::max<size_t>(keep, 1);
    cand_.resize(keep);
    total = 0.0;
    for (const Candidate& c : cand_) total += c.weight;
  }

  if (params_.min_p > 0.0f) {
    // p < min_p * p_max  <=>  weight < min_p, as the best survivor weighs 1.
    const float min_w = params_.min_p;
    cand_.erase(std::remove_if(cand_.begin(), cand_.end(), [&](const Candidate& c) { return c.weight < min_w; }),
                cand_.end());
    total = 0.0;
    for (const Candidate& c : cand_) total += c.weight;
  }

  const double u = NextUniform() * total;
  double cum = 0.0;
  size_t last_positive = 0;  // the max-logit candidate has weight 1
  for (size_t i = 0; i < cand_.size(); ++i) {
    cum += cand_[i].weight;
    if (u < cum) return result(cand_[i].id);
    if (cand_[i].weight > 0.0f) last_positive = i;
  }
  // Rounding put u at the very top of the mass.
  return result(cand_[last_positive].id);
}

}  // namespace skillpack
