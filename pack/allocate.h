// Byte-budget allocation for the compressor's budget mode: given, per module,
// candidate settings with their bytes and measured error, choose one setting
// per module minimising the total error with total bytes <= a budget.
//
// Method: greedy marginal gain on each module's lower convex hull of
// (bytes, error) (optimal for the Lagrangian relaxation: every module ends at
// the point its hull touches a common slope λ), then a fill phase that spends
// what is left on any candidate, hull or not, with the largest error drop
// that still fits. Errors must be comparable across modules (the compressor
// uses squared output error; see compressor.h).
#ifndef SKILLPACK_PACK_ALLOCATE_H_
#define SKILLPACK_PACK_ALLOCATE_H_

#include <cstdint>
#include <vector>

#include "core/status.h"

namespace skillpack {

// One setting of one module.
struct AllocOption {
  int64_t bytes = 0;  // >= 0
  double error = 0;   // >= 0, finite
};

struct Allocation {
  std::vector<size_t> choice;  // per module, an index into its options
  int64_t bytes = 0;           // Σ chosen bytes
  double error = 0;            // Σ chosen errors
};

// INVALID_ARGUMENT for a module without options or an option with negative
// bytes or a negative / non-finite error. RESOURCE_EXHAUSTED when even the
// cheapest option of every module together exceeds `budget` (the message
// gives that smallest total).
StatusOr<Allocation> AllocateBudget(const std::vector<std::vector<AllocOption>>& modules, int64_t budget);

// Steers budget mode's attempts from the file sizes they measure. Each attempt
// allocates `plan()` bytes (AllocateBudget) and gives `plan()` minus what the
// allocation took, plus `top_up()`, to the sparse module with the largest next
// entry; then the pack is serialised and its size recorded. The aim is a file
// in [98%, 100%] of the target, 99.5% ideally.
//
// The plan's estimate misses the file by a near-constant offset (header,
// manifest), which the correction `plan += aim - file` removes. But the file
// is a step function of the plan, and one step can jump over the whole band
// (a module moving to a larger option): the correction then swings between
// the two sides of the jump; and where the file grows faster than the plan,
// it overshoots further each time. So once one plan's file fit the target
// and another's did not, the plan stays strictly between the largest that fit
// and the smallest that did not (the correction where it lands there, else
// their midpoint); and where the correction would leave that bracket or the
// bracket is narrower than the band, the search goes back to the largest plan
// that fit and moves only the top sparse module's entries (`top_up()`), whose
// bytes the estimate counts exactly, if that plan's allocation had a sparse
// module with entries to spare.
class BudgetSearch {
 public:
  BudgetSearch(int64_t target, int64_t first_plan);

  int64_t plan() const { return plan_; }
  int64_t top_up() const { return top_up_; }
  int64_t aim() const { return aim_; }              // target - 0.5%
  int64_t lowest_ok() const { return lowest_ok_; }  // ceil(98% of target)

  // The file the current attempt gave, and whether its allocation had a
  // sparse module with entries to spare. Returns false when no next attempt
  // can come closer (the step would repeat one already measured).
  bool Record(int64_t file, bool sparse_room);

  // One attempt's outcome, whole: keeps the largest file within the target
  // (kept() says whether this attempt's is it, so the caller keeps its pack)
  // and says what comes next. `smallest`: the attempt's allocation was the
  // smallest there is, so an empty-handed overshoot means the target cannot
  // be met; once a file fit, an overshoot (a top-up from the smallest
  // allocation included) only steers the next attempt.
  enum class Verdict { kNext, kDone, kCannotBeMet };
  Verdict Attempt(int64_t file, bool smallest, bool sparse_room);
  bool kept() const { return kept_; }
  int64_t best_file() const { return best_file_; }  // -1 while nothing fit

 private:
  int64_t target_, aim_, lowest_ok_;
  int64_t best_file_ = -1;
  bool kept_ = false;
  int64_t plan_, top_up_ = 0;
  bool topping_up_ = false;
  int64_t last_file_ = -1;
  // The largest plan whose file fit the target (its file, and whether its
  // allocation had sparse room), the smallest whose file did not; -1 unknown.
  int64_t fit_plan_ = -1, fit_file_ = -1, over_plan_ = -1;
  bool fit_room_ = false;
};

}  // namespace skillpack

#endif  // SKILLPACK_PACK_ALLOCATE_H_
