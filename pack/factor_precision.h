// How decoded low-rank factors are kept in memory (DecodePack, the server's
// --factor-precision). No libtorch here: server headers name it.
#ifndef SKILLPACK_PACK_FACTOR_PRECISION_H_
#define SKILLPACK_PACK_FACTOR_PRECISION_H_

#include <string>

#include "core/status.h"

namespace skillpack {

// kFloat16 halves the factors' bytes: the server's host tier, and what a
// factorized decode step streams (core/model.cc reads them with SmallGemmF16).
// The rounding is 2^-11 relative per element, far below the pack's own
// quantisation of U and Vᵀ (2-8 bits). A module whose factors do not all fit
// float16's range (|v| <= 65504) stays float32.
enum class FactorPrecision { kFloat32, kFloat16 };

// "float32" / "float16"; INVALID_ARGUMENT naming the value otherwise.
StatusOr<FactorPrecision> ParseFactorPrecision(const std::string& name);
// The name ParseFactorPrecision reads.
const char* FactorPrecisionName(FactorPrecision p);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_FACTOR_PRECISION_H_
