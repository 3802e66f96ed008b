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

}  // namespace skillpack

#endif  // SKILLPACK_PACK_ALLOCATE_H_
