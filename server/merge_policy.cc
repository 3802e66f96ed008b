#include "server/merge_policy.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace skillpack {

Status ValidateMergePolicyOptions(const MergePolicyOptions& o) {
  if (!(o.merge_share > 0 && o.merge_share <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("merge_share ", o.merge_share, " is not in (0, 1]"));
  }
  if (!(o.unmerge_share > 0 && o.unmerge_share <= o.merge_share)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unmerge_share ", o.unmerge_share, " is not in (0, merge_share = ", o.merge_share, "]"));
  }
  if (!(o.window >= 1) || !std::isfinite(o.window)) {
    return absl::InvalidArgumentError(absl::StrCat("window ", o.window, " is below 1 request"));
  }
  if (!(o.min_credit >= 0) || !std::isfinite(o.min_credit)) {
    return absl::InvalidArgumentError(absl::StrCat("min_credit ", o.min_credit, " is negative"));
  }
  return absl::OkStatus();
}

MergePolicy::MergePolicy(MergePolicyOptions options) : options_(options), decay_(1.0 - 1.0 / options.window) {}

double MergePolicy::Credit(const Account& a) const {
  return a.credit * std::pow(decay_, static_cast<double>(tick_ - a.stamp));
}

bool MergePolicy::Observe(const std::string& key) {
  ++tick_;
  total_ = total_ * decay_ + 1;
  Account& a = accounts_[key];
  a.credit = Credit(a) + 1;
  a.stamp = tick_;
  const double share = a.credit / total_;
  if (a.merged && share < options_.unmerge_share) {
    a.merged = false;
  } else if (!a.merged && share >= options_.merge_share && a.credit >= options_.min_credit) {
    a.merged = true;
  }
  const bool merged = a.merged;
  if (accounts_.size() > static_cast<size_t>(8 * options_.window) + 16) Prune();
  return merged;
}

void MergePolicy::Forget(const std::string& key) { accounts_.erase(key); }

double MergePolicy::Share(const std::string& key) const {
  auto it = accounts_.find(key);
  return it == accounts_.end() || total_ <= 0 ? 0.0 : Credit(it->second) / total_;
}

bool MergePolicy::merged(const std::string& key) const {
  auto it = accounts_.find(key);
  return it != accounts_.end() && it->second.merged;
}

void MergePolicy::Prune() {
  // Sets with (almost) no recent requests: a new request starts them afresh.
  for (auto it = accounts_.begin(); it != accounts_.end();) {
    it = Credit(it->second) < 1e-3 * total_ && !it->second.merged ? accounts_.erase(it) : std::next(it);
  }
}

}  // namespace skillpack
