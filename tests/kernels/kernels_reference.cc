// CPU twins of the CUDA kernels (see kernels_reference.h).
#include "tests/kernels/kernels_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "pack/codec/bitpack.h"

namespace skillpack::kernels::testing {
namespace {

// Unpacks m.packed with core's UnpackCodes; aborts on a malformed matrix
// (a bug in the test itself).
std::vector<uint8_t> UnpackedCodes(const HostQuantMatrix& m) {
  std::vector<uint8_t> codes(static_cast<size_t>(m.rows) * m.cols);
  const Status status =
      UnpackCodes(m.packed.data(), m.packed.size(), static_cast<int64_t>(codes.size()), m.bits, codes.data());
  if (!status.ok()) std::abort();
  return codes;
}

// x[k] = (Vᵀ x)_k of every band, rank-indexed, in double.
std::vector<double> ProjectDown(const HostFactor& f, const std::vector<float>& x, int in_features, bool absolute) {
  std::vector<double> t(f.rank(), 0.0);
  for (const HostBand& band : f.bands) {
    const std::vector<float> vt = DequantizeReference(band.vt);
    for (int i = 0; i < band.vt.rows; ++i) {
      double acc = 0.0;
      for (int c = 0; c < in_features; ++c) {
        const double term = static_cast<double>(vt[i * in_features + c]) * x[c];
        acc += absolute ? std::fabs(term) : term;
      }
      t[band.rank_begin + i] = acc;
    }
  }
  return t;
}

std::vector<double> ProjectUp(const HostFactor& f, const std::vector<double>& t, int out_features, bool absolute) {
  std::vector<double> y(out_features, 0.0);
  for (const HostBand& band : f.bands) {
    const std::vector<float> u = DequantizeReference(band.u);
    const int width = band.u.cols;
    for (int o = 0; o < out_features; ++o) {
      double acc = 0.0;
      for (int j = 0; j < width; ++j) {
        const int k = band.rank_begin + j;
        double coef = static_cast<double>(f.weight) * f.sigma[k];
        if (absolute) coef = std::fabs(coef);
        const double term = static_cast<double>(u[o * width + j]) * coef * t[k];
        acc += absolute ? std::fabs(term) : term;
      }
      y[o] += acc;
    }
  }
  return y;
}

}  // namespace

HostQuantMatrix RandomQuantMatrix(std::mt19937& rng, int rows, int cols, int bits, int group_size, bool act_order,
                                  bool fp16_scales, float scale_magnitude, bool zeros_packed) {
  HostQuantMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.bits = bits;
  m.group_size = group_size;
  m.fp16_scales = fp16_scales;
  const int maxq = (1 << bits) - 1;
  std::uniform_int_distribution<int> code(0, maxq);
  std::uniform_real_distribution<float> unit(0.5f, 1.5f);
  m.codes.resize(static_cast<size_t>(rows) * cols);
  for (uint8_t& q : m.codes) q = static_cast<uint8_t>(code(rng));
  m.packed.resize(PackedBytes(static_cast<int64_t>(m.codes.size()), bits));
  if (!PackCodes(m.codes.data(), static_cast<int64_t>(m.codes.size()), bits, m.packed.data()).ok()) {
    std::abort();
  }
  const size_t groups = static_cast<size_t>(rows) * m.num_groups();
  m.scales.resize(groups);
  m.zeros.resize(groups);
  for (size_t i = 0; i < groups; ++i) {
    float s = scale_magnitude * unit(rng);
    if (fp16_scales) {
      const __half h = __float2half_rn(s);
      m.scales_fp16.push_back(h);
      s = __half2float(h);
    }
    m.scales[i] = s;
    m.zeros[i] = static_cast<uint8_t>(code(rng));
  }
  m.zeros_packed = zeros_packed;
  if (zeros_packed) {
    m.zeros_stream.resize(PackedBytes(static_cast<int64_t>(groups), bits));
    if (!PackCodes(m.zeros.data(), static_cast<int64_t>(groups), bits, m.zeros_stream.data()).ok()) {
      std::abort();
    }
  }
  if (act_order) {
    m.perm.resize(cols);
    std::iota(m.perm.begin(), m.perm.end(), 0);
    std::shuffle(m.perm.begin(), m.perm.end(), rng);
  }
  return m;
}

QuantMatrixView HostView(const HostQuantMatrix& m) {
  QuantMatrixView v;
  v.codes = m.packed.data();
  v.scales = m.fp16_scales ? static_cast<const void*>(m.scales_fp16.data()) : static_cast<const void*>(m.scales.data());
  v.scale_type = m.fp16_scales ? kScaleFloat16 : kScaleFloat32;
  v.zeros = m.zeros_packed ? m.zeros_stream.data() : m.zeros.data();
  v.zeros_packed = m.zeros_packed ? 1 : 0;
  v.perm = m.perm.empty() ? nullptr : m.perm.data();
  v.rows = m.rows;
  v.cols = m.cols;
  v.bits = m.bits;
  v.group_size = m.group_size;
  return v;
}

std::vector<float> DequantizeReference(const HostQuantMatrix& m) {
  const std::vector<uint8_t> codes = UnpackedCodes(m);
  const int groups = m.num_groups();
  std::vector<float> out(static_cast<size_t>(m.rows) * m.cols, 0.0f);
  for (int r = 0; r < m.rows; ++r) {
    for (int j = 0; j < m.cols; ++j) {
      const int g = j / m.group_size;
      const float s = m.scales[static_cast<size_t>(r) * groups + g];
      const int z = m.zeros[static_cast<size_t>(r) * groups + g];
      const int q = codes[static_cast<size_t>(r) * m.cols + j];
      const int c = m.perm.empty() ? j : m.perm[j];
      out[static_cast<size_t>(r) * m.cols + c] = static_cast<float>(q - z) * s;
    }
  }
  return out;
}

HostFactor RandomFactor(std::mt19937& rng, int in_features, int out_features, const std::vector<int>& widths,
                        const std::vector<int>& bits, int group_size, bool act_order, float weight) {
  HostFactor f;
  f.weight = weight;
  int rank = 0;
  for (size_t b = 0; b < widths.size(); ++b) {
    HostBand band;
    band.rank_begin = rank;
    // Scales keep |Ŵ| around 1 / sqrt(dim), like orthonormal factors.
    band.vt = RandomQuantMatrix(rng, widths[b], in_features, bits[b], group_size, act_order,
                                /*fp16_scales=*/b % 2 == 1,
                                2.0f / ((1 << bits[b]) * std::sqrt(static_cast<float>(in_features))),
                                /*zeros_packed=*/b % 2 == 0);
    band.u =
        RandomQuantMatrix(rng, out_features, widths[b], bits[b], group_size, act_order,
                          /*fp16_scales=*/false, 2.0f / ((1 << bits[b]) * std::sqrt(static_cast<float>(out_features))),
                          /*zeros_packed=*/b % 2 == 1);
    rank += widths[b];
    f.bands.push_back(std::move(band));
  }
  for (int k = 0; k < rank; ++k) {
    f.sigma.push_back(2.0f - 1.5f * static_cast<float>(k) / std::max(rank, 1));
  }
  return f;
}

std::vector<double> LowRankDeltaReference(const HostFactor& f, const std::vector<float>& x, int in_features,
                                          int out_features) {
  return ProjectUp(f, ProjectDown(f, x, in_features, false), out_features, false);
}

std::vector<double> LowRankDeltaMagnitude(const HostFactor& f, const std::vector<float>& x, int in_features,
                                          int out_features) {
  return ProjectUp(f, ProjectDown(f, x, in_features, true), out_features, true);
}

}  // namespace skillpack::kernels::testing
