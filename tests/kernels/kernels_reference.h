// CPU twins of the CUDA kernels in kernels/: plain loops over the same inputs
// (packed codes, per-group scales and zeros, act-order permutations) that the
// GPU tests compare against, plus random test data. Independent of the
// kernels' decoding code: codes are packed and unpacked with pack/codec/bitpack.h.
#ifndef SKILLPACK_TESTS_KERNELS_KERNELS_REFERENCE_H_
#define SKILLPACK_TESTS_KERNELS_KERNELS_REFERENCE_H_

#include <cuda_fp16.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/quant_view.h"

namespace skillpack::kernels::testing {

// One quantised [rows, cols] matrix on the host, in the kernels' input form.
struct HostQuantMatrix {
  int rows = 0;
  int cols = 0;
  int bits = 0;
  int group_size = 0;
  bool fp16_scales = false;
  std::vector<uint8_t> codes;         // [rows, cols] unpacked, stored order
  std::vector<uint8_t> packed;        // codes as one bitpack.h stream
  std::vector<float> scales;          // [rows, groups]; the values the kernel sees
                                      // (already rounded to fp16 if fp16_scales)
  std::vector<__half> scales_fp16;    // [rows, groups] when fp16_scales
  std::vector<uint8_t> zeros;         // [rows, groups], one per byte
  bool zeros_packed = false;          // the kernel reads zeros_stream instead
  std::vector<uint8_t> zeros_stream;  // zeros as one bitpack.h stream
  std::vector<int32_t> perm;          // [cols], or empty for the identity

  int num_groups() const { return (cols + group_size - 1) / group_size; }
};

// Random codes and zeros in [0, 2^bits - 1], scales in
// scale_magnitude * [0.5, 1.5), and with act_order a random permutation.
// With zeros_packed the kernel gets the zeros bit-packed (the file form).
HostQuantMatrix RandomQuantMatrix(std::mt19937& rng, int rows, int cols, int bits, int group_size, bool act_order,
                                  bool fp16_scales, float scale_magnitude, bool zeros_packed = false);

// A view whose pointers are the host vectors of m (for the host emulation of
// the kernels' per-thread code). m must outlive the view.
QuantMatrixView HostView(const HostQuantMatrix& m);

// The twin of dequantisation: Ŵ [rows, cols] in ORIGINAL column order,
// Ŵ[r][perm[j]] = (q[r][j] - z[r][g]) * s[r][g], g = j / group_size, with the
// codes unpacked from m.packed by core's UnpackCodes.
std::vector<float> DequantizeReference(const HostQuantMatrix& m);

// One band of a pack's low-rank factors: U [out, width], Vᵀ [width, in].
struct HostBand {
  int rank_begin = 0;
  HostQuantMatrix u;
  HostQuantMatrix vt;
};
struct HostFactor {
  std::vector<HostBand> bands;
  std::vector<float> sigma;  // [rank]
  float weight = 1.0f;
  int rank() const { return static_cast<int>(sigma.size()); }
};

// A pack factor with bands of the given widths and bits (act-order per band
// as asked), σ descending in (0.5, 2], for a module [out, in].
HostFactor RandomFactor(std::mt19937& rng, int in_features, int out_features, const std::vector<int>& widths,
                        const std::vector<int>& bits, int group_size, bool act_order, float weight);

// The twin of the low-rank apply for one input row: the delta
// weight * U diag(σ) Vᵀ x, [out], accumulated in double from the
// dequantised factors. x is [in] in original order.
std::vector<double> LowRankDeltaReference(const HostFactor& f, const std::vector<float>& x, int in_features,
                                          int out_features);

// Σ_k |weight σ_k| |U[o][k]| |(Vᵀ x)_k| per output: the scale of the sum, for
// tolerances.
std::vector<double> LowRankDeltaMagnitude(const HostFactor& f, const std::vector<float>& x, int in_features,
                                          int out_features);

}  // namespace skillpack::kernels::testing

#endif  // SKILLPACK_TESTS_KERNELS_KERNELS_REFERENCE_H_
