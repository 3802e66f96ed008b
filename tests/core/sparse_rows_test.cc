// SparseRows against the dense matrix it stands for: the conversion from a
// pack's flat indices, the raw loops (a linear layer's and an embedding's
// correction) and their ATen forms, empty rows and an empty matrix, and the
// checks naming what is wrong.
#include "core/sparse_rows.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace skillpack {
namespace {

using ::testing::HasSubstr;

// A [rows, cols] matrix with nnz random entries (so most rows of a tall one
// are empty), as SparseRows and as the dense matrix.
std::pair<SparseRows, at::Tensor> RandomSparse(int64_t rows, int64_t cols, int64_t nnz, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const at::Tensor flat = std::get<0>(at::sort(at::randperm(rows * cols, gen).slice(0, 0, nnz)));
  const at::Tensor values = at::randn({nnz}, gen).to(at::kHalf);  // a pack's values are float16
  at::Tensor dense = at::zeros({rows * cols});
  dense.index_put_({flat}, values.to(at::kFloat));
  return {SparseRows::FromFlat(flat, values, rows, cols), dense.view({rows, cols})};
}

TEST(SparseRowsTest, FromFlatKeepsEveryEntryExactly) {
  for (int64_t nnz : {0, 1, 40, 600}) {
    SCOPED_TRACE(nnz);
    const auto [s, dense] = RandomSparse(50, 24, nnz, 7 + nnz);
    EXPECT_TRUE(CheckSparseRows(s, 50, 24).ok()) << CheckSparseRows(s, 50, 24);
    EXPECT_EQ(s.rows(), 50);
    EXPECT_EQ(s.nnz(), nnz);
    EXPECT_EQ(s.bytes(), 51 * 8 + nnz * 8);
    EXPECT_TRUE(at::equal(s.Dense(), dense));
  }
}

TEST(SparseRowsTest, RawLoopsAndTheirAtenFormsEqualTheDenseMaths) {
  const auto [s, dense] = RandomSparse(70, 33, 100, 11);  // ~1.4 entries a row, some rows empty
  at::Generator gen = at::detail::createCPUGenerator(5);
  const at::Tensor x = at::randn({5, 33}, gen);
  const at::Tensor y0 = at::randn({5, 70}, gen);
  const at::Tensor want = y0 + 0.5 * at::matmul(x, dense.t());
  // The output rows in two ranges, as threads would take them.
  at::Tensor y = y0.clone();
  std::vector<const float*> x_rows;
  std::vector<float*> y_rows;
  for (int64_t i = 0; i < 5; ++i) {
    x_rows.push_back(x.data_ptr<float>() + i * 33);
    y_rows.push_back(y.data_ptr<float>() + i * 70);
  }
  const int64_t* off = s.offsets.data_ptr<int64_t>();
  const int32_t* cols = s.cols.data_ptr<int32_t>();
  const float* vals = s.values.data_ptr<float>();
  SparseRowsLinearAdd(off, cols, vals, 0.5f, x_rows.data(), 5, 0, 31, y_rows.data());
  SparseRowsLinearAdd(off, cols, vals, 0.5f, x_rows.data(), 5, 31, 70, y_rows.data());
  EXPECT_TRUE(at::allclose(y, want, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(y0 + 0.5 * s.Linear(x), want, 1e-5, 1e-5));
  // Pieces of rows: 2^24 / 100 rows a piece is more than 5; a matrix with
  // more entries than 2^24 / m would split, the same sums.
  EXPECT_TRUE(at::allclose(s.Linear(x.to(at::kDouble)), at::matmul(x.to(at::kDouble), dense.t().to(at::kDouble))));

  // Embedding rows, a token repeated and one whose row is empty.
  int64_t empty_row = -1;
  for (int64_t r = 0; r < 70 && empty_row < 0; ++r) {
    if (off[r] == off[r + 1]) empty_row = r;
  }
  ASSERT_GE(empty_row, 0);
  const std::vector<int64_t> ids = {3, 69, 3, empty_row, 0};
  at::Tensor e = at::randn({5, 33}, gen);
  const at::Tensor e0 = e.clone();
  std::vector<float*> e_rows;
  for (int64_t i = 0; i < 5; ++i) e_rows.push_back(e.data_ptr<float>() + i * 33);
  SparseRowsGatherAdd(off, cols, vals, -2.0f, ids.data(), 5, e_rows.data());
  const at::Tensor id_t = at::tensor(ids, at::kLong);
  const at::Tensor want_e = e0 - 2.0 * dense.index_select(0, id_t);
  EXPECT_TRUE(at::allclose(e, want_e, 1e-6, 1e-6));
  EXPECT_TRUE(at::equal(s.GatherRows(id_t, at::kFloat), dense.index_select(0, id_t)));
  EXPECT_EQ(s.GatherRows(id_t, at::kDouble).scalar_type(), at::kDouble);
}

TEST(SparseRowsTest, AnEmptyMatrixAddsNothing) {
  const auto [s, dense] = RandomSparse(8, 4, 0, 1);
  const at::Tensor x = at::ones({2, 4});
  EXPECT_TRUE(at::equal(s.Linear(x), at::zeros({2, 8})));
  EXPECT_TRUE(at::equal(s.GatherRows(at::tensor({1, 7}, at::kLong), at::kFloat), at::zeros({2, 4})));
}

TEST(SparseRowsTest, ChecksNameWhatIsWrong) {
  const auto [good, dense] = RandomSparse(10, 6, 20, 3);
  auto check = [](const SparseRows& s) { return std::string(CheckSparseRows(s, 10, 6).message()); };
  EXPECT_TRUE(CheckSparseRows(good, 10, 6).ok());
  EXPECT_THAT(std::string(CheckSparseRows(good, 11, 6).message()), HasSubstr("offsets must be int64 [12]"));
  EXPECT_THAT(std::string(CheckSparseRows(good, 10, 7).message()), HasSubstr("num_cols 6, expected 7"));
  SparseRows s = good;
  s.values = good.values.to(at::kHalf);
  EXPECT_THAT(check(s), HasSubstr("values must be float32"));
  s = good;
  s.cols = good.cols.to(at::kLong);
  EXPECT_THAT(check(s), HasSubstr("cols must be int32 [20]"));
  s = good;
  s.cols = good.cols.clone();
  s.cols[0] = 6;
  EXPECT_THAT(check(s), HasSubstr("outside [0, 6)"));
  s = good;
  s.offsets = good.offsets.clone();
  s.offsets[10] = 19;
  EXPECT_THAT(check(s), HasSubstr("from 0 to nnz = 20"));
  s = good;
  s.offsets = good.offsets.clone();
  s.offsets[5] = 20;  // row 4 ends past row 5's start
  EXPECT_THAT(check(s), HasSubstr("offsets decrease"));
  s = good;
  s.cols = good.cols.flip(0).contiguous();  // columns no longer increase within rows
  EXPECT_THAT(check(s), HasSubstr("do not increase within a row"));
  s = good;
  s.values = good.values.clone();
  s.values[3] = std::nanf("");
  EXPECT_THAT(check(s), HasSubstr("not finite"));
  s = good;
  s.offsets = at::Tensor();
  EXPECT_THAT(check(s), HasSubstr("must all be set"));
}

}  // namespace
}  // namespace skillpack
