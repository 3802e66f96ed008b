// QuantRows against the matrix it stands for, computed here from the
// definition in core/quant_rows.h (W[r][perm[j]] = (codes + shifts) · scales
// of j's group): the dense and gathered forms, the raw loops (a linear layer's
// correction over 1 to 16 rows of x and any range of output rows, an
// embedding's), groups that leave a padded last one or one group only, with
// and without a permutation, and the checks naming what is wrong.
#include "core/quant_rows.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/small_gemm.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;

// Random codes of `bits` bits for a [rows, cols] matrix in groups of
// group_size (the last padded), scales and shifts, and a random permutation
// when permuted; with the matrix as float64, built entry by entry.
std::pair<QuantRows, at::Tensor> RandomQuant(int64_t rows, int64_t cols, int64_t group_size, int bits, bool permuted,
                                             uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const int64_t groups = (cols + group_size - 1) / group_size, center = int64_t{1} << (bits - 1);
  QuantRows q;
  q.num_cols = cols;
  q.codes = (at::randint(0, 2 * center, {groups, rows, group_size}, gen, at::kLong) - center).to(at::kChar);
  // The padding of the last group holds zero codes.
  if (groups * group_size > cols)
    q.codes.select(0, groups - 1).narrow(1, cols - (groups - 1) * group_size, groups * group_size - cols).zero_();
  q.scales = at::rand({groups, rows}, gen) * 0.01 + 1e-4;
  q.shifts = center - at::randint(0, 2 * center, {groups, rows}, gen).to(at::kFloat);
  if (permuted) q.perm = at::randperm(cols, gen);
  at::Tensor w = at::zeros({rows, cols}, at::kDouble);
  auto c = q.codes.accessor<int8_t, 3>();
  auto s = q.scales.accessor<float, 2>();
  auto z = q.shifts.accessor<float, 2>();
  auto wa = w.accessor<double, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t g = j / group_size, col = permuted ? q.perm[j].item<int64_t>() : j;
      wa[r][col] = (static_cast<double>(c[g][r][j - g * group_size]) + z[g][r]) * s[g][r];
    }
  }
  return {q, w};
}

// Each test leaves the best kernel active however it ends.
class QuantRowsTest : public ::testing::Test {
 protected:
  void TearDown() override { SetSmallGemmEnabled(true); }
};

struct Shape {
  int64_t rows, cols, group_size;
  int bits;
};
// A padded last group (20 = 8 + 8 + 4), one group only, whole groups, and a
// tall matrix over several output chunks (2500 rows); then groups of a multiple
// of 16 columns (what SmallGemmGroupedI8 reads): a padded last group of 32, two
// of 128, and 69 groups of 16 over several of its blocks of groups, with row
// counts that leave partial tiles.
const std::vector<Shape> kShapes = {{7, 20, 8, 4},    {5, 9, 9, 8},      {33, 64, 16, 2},  {2500, 48, 16, 3},
                                    {53, 200, 32, 4}, {40, 256, 128, 8}, {30, 1100, 16, 4}};

TEST_F(QuantRowsTest, DenseAndGatheredRowsAreTheMatrix) {
  for (const Shape& sh : kShapes) {
    for (bool permuted : {false, true}) {
      SCOPED_TRACE(absl::StrCat(sh.rows, "x", sh.cols, " groups of ", sh.group_size, permuted ? " permuted" : ""));
      const auto [q, w] = RandomQuant(sh.rows, sh.cols, sh.group_size, sh.bits, permuted, sh.rows + permuted);
      ASSERT_TRUE(CheckQuantRows(q, sh.rows, sh.cols).ok()) << CheckQuantRows(q, sh.rows, sh.cols);
      EXPECT_TRUE(at::allclose(q.Dense().to(at::kDouble), w, 1e-6, 1e-9));
      const at::Tensor ids = at::tensor(std::vector<int64_t>{sh.rows - 1, 0, sh.rows - 1}, at::kLong);
      EXPECT_TRUE(at::allclose(q.GatherRows(ids).to(at::kDouble), w.index_select(0, ids), 1e-6, 1e-9));
      EXPECT_EQ(q.bytes(), sh.rows * q.num_groups() * (sh.group_size + 8) + (permuted ? 8 * sh.cols : 0));
    }
  }
}

// Each kernel this CPU runs: the AVX-512 one reads groups of a multiple of 16
// columns through SmallGemmGroupedI8; the AVX2 one, and every other group
// size, per group up to 7 rows and widened per block from 8.
std::vector<SmallGemmIsa> Kernels() {
  std::vector<SmallGemmIsa> isas = {SmallGemmBestIsa()};
  if (SmallGemmBestIsa() == SmallGemmIsa::kAvx512) isas.push_back(SmallGemmIsa::kAvx2);
  return isas;
}

TEST_F(QuantRowsTest, RawLoopsAddTheMatrixProducts) {
  if (!SmallGemmAvailable()) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
  for (SmallGemmIsa isa : Kernels()) {
    ASSERT_TRUE(SetSmallGemmIsa(isa));
    for (const Shape& sh : kShapes) {
      for (bool permuted : {false, true}) {
        // Two-group tiles from 9 rows (a partial second group at 9 and 12).
        for (int64_t m : {1, 3, 7, 8, 9, 12, 16}) {
          SCOPED_TRACE(absl::StrCat(SmallGemmIsaName(isa), ": ", sh.rows, "x", sh.cols, " groups of ", sh.group_size,
                                    permuted ? " permuted" : "", ", ", m, " rows"));
          const auto [q, w] = RandomQuant(sh.rows, sh.cols, sh.group_size, sh.bits, permuted, 100 + m);
          at::Generator gen = at::detail::createCPUGenerator(m);
          const at::Tensor x = at::randn({m, sh.cols}, gen);
          at::Tensor y = at::randn({m, sh.rows}, gen);
          const at::Tensor y0 = y.clone();
          std::vector<const float*> x_rows;
          std::vector<float*> y_rows;
          for (int64_t i = 0; i < m; ++i) {
            x_rows.push_back(x.data_ptr<float>() + i * sh.cols);
            y_rows.push_back(y.data_ptr<float>() + i * sh.rows);
          }
          std::vector<float> xs(m * QuantRowsInputStride(q)), sums(m * q.num_groups());
          QuantRowsPrepareInputs(q, x_rows.data(), m, xs.data(), sums.data());
          // Output rows [1, rows - 1) only: the first and last stay as they were.
          QuantRowsLinearAdd(q, 0.7f, xs.data(), sums.data(), m, 1, sh.rows - 1, y_rows.data());
          at::Tensor want = y0.to(at::kDouble) + 0.7 * x.to(at::kDouble).matmul(w.t());
          want.select(1, 0).copy_(y0.select(1, 0));
          want.select(1, sh.rows - 1).copy_(y0.select(1, sh.rows - 1));
          const double tol = 1e-5 * (1 + want.abs().max().item<double>());
          EXPECT_LE((y.to(at::kDouble) - want).abs().max().item<double>(), tol);

          // An embedding's correction: rows of W added to rows of x.
          at::Tensor e = at::randn({3, sh.cols}, gen);
          const at::Tensor e0 = e.clone();
          const std::vector<int64_t> ids = {sh.rows - 1, 0, sh.rows - 1};
          std::vector<float*> e_rows;
          for (int64_t i = 0; i < 3; ++i) e_rows.push_back(e.data_ptr<float>() + i * sh.cols);
          QuantRowsGatherAdd(q, -1.5f, ids.data(), 3, e_rows.data());
          const at::Tensor ewant = e0.to(at::kDouble) - 1.5 * w.index_select(0, at::tensor(ids, at::kLong));
          EXPECT_LE((e.to(at::kDouble) - ewant).abs().max().item<double>(), 1e-6);
        }
      }
    }
  }
}

TEST_F(QuantRowsTest, ChecksNameWhatIsWrong) {
  const auto [good, w] = RandomQuant(7, 20, 8, 4, true, 3);
  ASSERT_TRUE(CheckQuantRows(good, 7, 20).ok());
  auto check = [](const QuantRows& q) { return std::string(CheckQuantRows(q, 7, 20).message()); };
  QuantRows q = good;
  q.shifts = at::Tensor();
  EXPECT_THAT(check(q), HasSubstr("codes, scales and shifts must all be set"));
  q = good;
  q.codes = good.codes.to(at::kShort);
  EXPECT_THAT(check(q), HasSubstr("codes must be int8 [groups, 7, group size]"));
  q = good;
  q.num_cols = 19;
  EXPECT_THAT(check(q), HasSubstr("for 19 columns, expected 20 columns in 3 groups"));
  q = good;
  q.codes = good.codes.narrow(0, 0, 2).contiguous();
  EXPECT_THAT(check(q), HasSubstr("2 groups of 8"));
  q = good;
  q.scales = good.scales.to(at::kDouble);
  EXPECT_THAT(check(q), HasSubstr("scales and shifts must be float32 [3, 7]"));
  q = good;
  q.shifts = good.shifts.narrow(1, 0, 6);
  EXPECT_THAT(check(q), HasSubstr("scales and shifts must be float32 [3, 7]"));
  q = good;
  q.scales = good.scales.clone();
  q.scales[1][2] = std::nanf("");
  EXPECT_THAT(check(q), HasSubstr("not finite"));
  q = good;
  q.perm = good.perm.narrow(0, 0, 19);
  EXPECT_THAT(check(q), HasSubstr("perm must be int64 [20]"));
  q = good;
  q.perm = good.perm.clone();
  q.perm[3] = q.perm[4].item<int64_t>();
  EXPECT_THAT(check(q), HasSubstr("not a permutation of [0, 20)"));
  q.perm[3] = 20;
  EXPECT_THAT(check(q), HasSubstr("not a permutation of [0, 20)"));
  EXPECT_THAT(std::string(CheckQuantRows(good, 8, 20).message()), HasSubstr("codes must be int8 [groups, 8"));
}

}  // namespace
}  // namespace skillpack
