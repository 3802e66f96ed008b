// When serving mode `auto` merges a pack set into fused weights (dLoRA's
// dynamic merge/unmerge, OSDI'24, as a credit account per set).
//
// Every request adds one credit to its set's account (the base-only "set"
// included: its rows share the base pass too) and all accounts decay by
// 1 - 1/window per request, so an account is the set's request count over an
// exponential window of about `window` requests, and its share is that count
// over the window's total. A set is merged once its share reaches
// `merge_share` (and it holds at least `min_credit`), and unmerged once the
// share falls below `unmerge_share` (hysteresis, so a set near the threshold
// does not flap between fused copies).
//
// Why shares and not counts: on a memory-bound decode every distinct fused
// set is its own forward pass over the weights it touches, while factorized
// sets ride on the one base pass and pay only their low-rank terms. A fused
// copy therefore pays only when one set holds nearly the whole batch (the
// figures are in bench/README.md, serving_bench). Not thread-safe: the pack
// cache calls it under its lock.
#ifndef SKILLPACK_SERVER_MERGE_POLICY_H_
#define SKILLPACK_SERVER_MERGE_POLICY_H_

#include <cstdint>
#include <map>
#include <string>

#include "core/status.h"

namespace skillpack {

struct MergePolicyOptions {
  double merge_share = 0.9;
  double unmerge_share = 0.6;
  double window = 64;       // requests
  double min_credit = 4.0;  // decayed requests a set needs before it merges
};

// INVALID_ARGUMENT naming the field: 0 < unmerge_share <= merge_share <= 1,
// window >= 1, min_credit >= 0.
Status ValidateMergePolicyOptions(const MergePolicyOptions& o);

class MergePolicy {
 public:
  explicit MergePolicy(MergePolicyOptions options);

  // Records one request for set `key` and returns whether it should be
  // served merged from now on.
  bool Observe(const std::string& key);
  // Forgets `key` (its packs were deleted or replaced).
  void Forget(const std::string& key);

  // The set's share of the window's requests, in [0, 1].
  double Share(const std::string& key) const;
  bool merged(const std::string& key) const;

 private:
  struct Account {
    double credit = 0;  // as of tick `stamp`
    int64_t stamp = 0;
    bool merged = false;
  };
  double Credit(const Account& a) const;  // decayed to now
  void Prune();

  const MergePolicyOptions options_;
  const double decay_;
  int64_t tick_ = 0;
  double total_ = 0;  // decayed request count over all sets
  std::map<std::string, Account> accounts_;
};

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_MERGE_POLICY_H_
