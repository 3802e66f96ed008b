// How decoded low-rank factors are kept in memory (DecodePack, the server's
// --factor-precision). No libtorch here: server headers name it.
#ifndef SKILLPACK_PACK_FACTOR_PRECISION_H_
#define SKILLPACK_PACK_FACTOR_PRECISION_H_

#include <string>

#include "core/status.h"

namespace skillpack {

// kFloat16 halves the factors' bytes: the server's host tier, and what a
// factorized decode step streams (core/model.cc reads them with SmallGemmF16).
// Each factor is scaled by a power of two into float16's normal range first
// (DecodedModule::factor_scale), so the rounding is 2^-11 relative per element
// down to 2^-14 of the factor's largest entry, far below the pack's own
// quantisation of U and Vᵀ (2-8 bits).
//
// kInt8 quarters them (against float32): symmetric int8 codes per rank
// component, U·diag(σ) by column and Vᵀ by row, the two scales multiplied into
// one per component (DecodedModule::rank_scale), so a decode step reads the
// codes (SmallGemmI8) and scales the rank-sized intermediate. The rounding is
// up to 1/254 of each component's largest entry in each factor: below the
// pack's own 2-8-bit codes of U and Vᵀ but not far below its 8-bit bands,
// and measured (bench/README.md, "Int8 factors"): on the 78 packs of the
// three-seed fidelity studies (500 prompts each) int8 moved single answers
// both ways, +3 net of 39 000, no measurable cost ("Int8 factors' answers on
// the three-seed packs").
enum class FactorPrecision { kFloat32, kFloat16, kInt8 };

// What the server keeps decoded packs' factors in unless told otherwise
// (--factor-precision; server/server.h, NewPackRuntime): int8, half of
// float16's bytes in the host tier and in what a factorized step streams.
inline constexpr FactorPrecision kServedFactorPrecision = FactorPrecision::kInt8;

// "float32" / "float16" / "int8"; INVALID_ARGUMENT naming the value otherwise.
StatusOr<FactorPrecision> ParseFactorPrecision(const std::string& name);
// The name ParseFactorPrecision reads.
const char* FactorPrecisionName(FactorPrecision p);

}  // namespace skillpack

#endif  // SKILLPACK_PACK_FACTOR_PRECISION_H_
