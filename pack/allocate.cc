#include "pack/allocate.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <tuple>

namespace skillpack {
namespace {

// Indices of `opts` on the lower convex hull of (bytes, error), by increasing
// bytes and strictly decreasing error, starting at the cheapest option (the
// least error among equally cheap ones).
std::vector<size_t> Hull(const std::vector<AllocOption>& opts) {
  std::vector<size_t> idx(opts.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return std::tie(opts[a].bytes, opts[a].error) < std::tie(opts[b].bytes, opts[b].error);
  });
  std::vector<size_t> mono;  // Pareto front: each strictly better than the cheaper ones
  for (size_t i : idx) {
    if (mono.empty() || opts[i].error < opts[mono.back()].error) {
      if (!mono.empty() && opts[mono.back()].bytes == opts[i].bytes) mono.pop_back();
      mono.push_back(i);
    }
  }
  std::vector<size_t> hull;
  for (size_t i : mono) {
    // Drop the last hull point while it lies on or above the segment from the
    // one before it to i (not convex).
    while (hull.size() >= 2) {
      const AllocOption& a = opts[hull[hull.size() - 2]];
      const AllocOption& b = opts[hull.back()];
      const AllocOption& c = opts[i];
      const double lhs = (b.error - a.error) * static_cast<double>(c.bytes - a.bytes);
      const double rhs = (c.error - a.error) * static_cast<double>(b.bytes - a.bytes);
      if (lhs >= rhs) {
        hull.pop_back();
      } else {
        break;
      }
    }
    hull.push_back(i);
  }
  return hull;
}

}  // namespace

StatusOr<Allocation> AllocateBudget(const std::vector<std::vector<AllocOption>>& modules, int64_t budget) {
  for (size_t m = 0; m < modules.size(); ++m) {
    if (modules[m].empty()) return absl::InvalidArgumentError(absl::StrCat("module ", m, " has no options"));
    for (const AllocOption& o : modules[m]) {
      if (o.bytes < 0 || !(o.error >= 0) || !std::isfinite(o.error)) {
        return absl::InvalidArgumentError(
            absl::StrCat("module ", m, " has an option with bytes ", o.bytes, " and error ", o.error));
      }
    }
  }
  std::vector<std::vector<size_t>> hulls;
  std::vector<size_t> pos(modules.size(), 0);  // position on the hull
  Allocation a;
  a.choice.resize(modules.size());
  for (size_t m = 0; m < modules.size(); ++m) {
    hulls.push_back(Hull(modules[m]));
    a.choice[m] = hulls[m][0];
    a.bytes += modules[m][a.choice[m]].bytes;
  }
  if (a.bytes > budget) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a budget of ", budget, " bytes cannot be met: the smallest setting takes ", a.bytes, " bytes"));
  }
  // Greedy on the hulls, steepest error drop per byte first. Hull slopes
  // decrease along each hull, so each module's next step is its best.
  using Step = std::pair<double, size_t>;  // (error drop per byte, module)
  std::priority_queue<Step> queue;
  auto push_next = [&](size_t m) {
    if (pos[m] + 1 >= hulls[m].size()) return;
    const AllocOption& cur = modules[m][hulls[m][pos[m]]];
    const AllocOption& next = modules[m][hulls[m][pos[m] + 1]];
    queue.push({(cur.error - next.error) / static_cast<double>(std::max<int64_t>(1, next.bytes - cur.bytes)), m});
  };
  for (size_t m = 0; m < modules.size(); ++m) push_next(m);
  while (!queue.empty()) {
    const size_t m = queue.top().second;
    queue.pop();
    const int64_t extra = modules[m][hulls[m][pos[m] + 1]].bytes - modules[m][hulls[m][pos[m]]].bytes;
    if (a.bytes + extra > budget) continue;  // this module stops here; others may still fit
    a.bytes += extra;
    ++pos[m];
    a.choice[m] = hulls[m][pos[m]];
    push_next(m);
  }
  // Fill: the largest error drop that fits the rest of the budget, any option.
  for (;;) {
    double best_drop = 0;
    size_t best_m = 0, best_i = 0;
    for (size_t m = 0; m < modules.size(); ++m) {
      const AllocOption& cur = modules[m][a.choice[m]];
      for (size_t i = 0; i < modules[m].size(); ++i) {
        const AllocOption& o = modules[m][i];
        const double drop = cur.error - o.error;
        if (drop > best_drop && a.bytes - cur.bytes + o.bytes <= budget) {
          best_drop = drop;
          best_m = m;
          best_i = i;
        }
      }
    }
    if (best_drop <= 0) break;
    a.bytes += modules[best_m][best_i].bytes - modules[best_m][a.choice[best_m]].bytes;
    a.choice[best_m] = best_i;
  }
  for (size_t m = 0; m < modules.size(); ++m) a.error += modules[m][a.choice[m]].error;
  return a;
}

BudgetSearch::BudgetSearch(int64_t target, int64_t first_plan)
    : target_(target),
      aim_(target - target / 200),
      lowest_ok_(static_cast<int64_t>(std::ceil(0.98 * static_cast<double>(target)))),
      plan_(first_plan) {}

bool BudgetSearch::Record(int64_t file, bool sparse_room) {
  if (topping_up_) {  // only the sparse module's entries move now
    if (file == last_file_) return false;
    last_file_ = file;
    top_up_ += aim_ - file;
    return true;
  }
  if (file <= target_ && plan_ > fit_plan_) {
    fit_plan_ = plan_;
    fit_file_ = file;
    fit_room_ = sparse_room;
  }
  if (file > target_ && (over_plan_ < 0 || plan_ < over_plan_)) over_plan_ = plan_;
  int64_t next = plan_ + (aim_ - file);
  if (fit_plan_ >= 0 && over_plan_ >= 0) {
    const bool leaves = next <= fit_plan_ || next >= over_plan_;
    if (fit_room_ && (leaves || over_plan_ - fit_plan_ <= target_ - lowest_ok_)) {
      plan_ = fit_plan_;
      topping_up_ = true;
      top_up_ = aim_ - fit_file_;
      last_file_ = fit_file_;
      return true;
    }
    if (leaves) next = fit_plan_ + (over_plan_ - fit_plan_) / 2;
  }
  if (next == plan_ || next == fit_plan_ || next == over_plan_) return false;
  plan_ = next;
  return true;
}

BudgetSearch::Verdict BudgetSearch::Attempt(int64_t file, bool smallest, bool sparse_room) {
  kept_ = file <= target_ && file > best_file_;
  if (kept_) best_file_ = file;
  if (best_file_ >= lowest_ok_) return Verdict::kDone;
  if (file > target_ && smallest && best_file_ < 0) return Verdict::kCannotBeMet;
  return Record(file, sparse_room) ? Verdict::kNext : Verdict::kDone;
}

}  // namespace skillpack
