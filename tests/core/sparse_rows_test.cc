// SparseRows against the dense matrix it stands for: the conversion from a
// pack's flat indices (int16 or int32 columns, float16 or float32 values),
// the raw loops (a linear layer's and an embedding's correction) and their
// ATen forms, empty rows and an empty matrix, and the checks naming what is
// wrong.
#include "core/sparse_rows.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/small_gemm.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;

// A [rows, cols] matrix with nnz random entries (so most rows of a tall one
// are empty), as SparseRows and as the dense matrix; values float16 (a
// pack's) or float32.
std::pair<SparseRows, at::Tensor> RandomSparse(int64_t rows, int64_t cols, int64_t nnz, uint64_t seed,
                                               at::ScalarType type = at::kHalf) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const at::Tensor flat = std::get<0>(at::sort(at::randperm(rows * cols, gen).slice(0, 0, nnz)));
  const at::Tensor values = at::randn({nnz}, gen).to(type);
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
    EXPECT_EQ(s.cols.scalar_type(), at::kShort);
    EXPECT_EQ(s.values.scalar_type(), at::kHalf);
    EXPECT_EQ(s.bytes(), 51 * 8 + nnz * 4);  // 4 bytes an entry, 8 a row
    EXPECT_TRUE(at::equal(s.Dense(), dense));
  }
}

// Wide matrices take int32 columns; values may be float32 too.
TEST(SparseRowsTest, WideMatricesTakeInt32Columns) {
  const auto [s, dense] = RandomSparse(3, 40000, 50, 2, at::kFloat);
  EXPECT_EQ(s.cols.scalar_type(), at::kInt);
  EXPECT_EQ(s.values.scalar_type(), at::kFloat);
  EXPECT_TRUE(CheckSparseRows(s, 3, 40000).ok()) << CheckSparseRows(s, 3, 40000);
  EXPECT_TRUE(at::equal(s.Dense(), dense));
  SparseRows narrow = s;
  narrow.cols = s.cols.to(at::kShort);
  EXPECT_THAT(std::string(CheckSparseRows(narrow, 3, 40000).message()), HasSubstr("int16 up to 32768 columns"));
}

// The raw loops over every form (int16 / int32 columns, float16 / float32
// values), 1 to 11 rows of x (groups of 8 and a rest) and rows of 0 to ~40
// entries (vectors of 8 and a rest), and their ATen forms.
TEST(SparseRowsTest, RawLoopsAndTheirAtenFormsEqualTheDenseMaths) {
  if (!SmallGemmAvailable()) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU";
  for (auto [cols_n, type] : {std::pair{int64_t{33}, at::kHalf},
                              {int64_t{33}, at::kFloat},
                              {int64_t{40000}, at::kHalf},
                              {int64_t{40000}, at::kFloat}}) {
    SCOPED_TRACE(absl::StrCat(cols_n, " columns, ", c10::toString(type)));
    // Rows 0-59: ~1.4 entries a row (some empty); rows 60-69: ~20 a row.
    at::Tensor dense = RandomSparse(60, cols_n, 85, 11, type).second;
    at::Generator g = at::detail::createCPUGenerator(12);
    const at::Tensor extra = at::randn({10, cols_n}, g) * (at::rand({10, cols_n}, g) < 20.0 / cols_n);
    dense = at::cat({dense, extra.to(type).to(at::kFloat)});
    const at::Tensor flat = at::nonzero(dense.reshape({-1})).view({-1});
    const SparseRows s = SparseRows::FromFlat(flat, dense.reshape({-1}).index_select(0, flat).to(type), 70, cols_n);
    ASSERT_TRUE(CheckSparseRows(s, 70, cols_n).ok());
    const int64_t* off = s.offsets.data_ptr<int64_t>();
    int64_t longest = 0;
    for (int64_t r = 0; r < 70; ++r) longest = std::max(longest, off[r + 1] - off[r]);
    EXPECT_GE(longest, 9) << "some row runs the vector loop";
    for (int64_t m : {1, 3, 8, 11}) {
      SCOPED_TRACE(absl::StrCat(m, " rows"));
      at::Generator gen = at::detail::createCPUGenerator(5 + m);
      const at::Tensor x = at::randn({m, cols_n}, gen);
      const at::Tensor y0 = at::randn({m, 70}, gen);
      const at::Tensor want = y0 + 0.5 * at::matmul(x, dense.t());
      // The output rows in two ranges, as threads would take them.
      at::Tensor y = y0.clone();
      std::vector<const float*> x_rows;
      std::vector<float*> y_rows;
      for (int64_t i = 0; i < m; ++i) {
        x_rows.push_back(x.data_ptr<float>() + i * cols_n);
        y_rows.push_back(y.data_ptr<float>() + i * 70);
      }
      SparseRowsLinearAdd(s, 0.5f, x_rows.data(), m, 0, 31, y_rows.data());
      SparseRowsLinearAdd(s, 0.5f, x_rows.data(), m, 31, 70, y_rows.data());
      EXPECT_TRUE(at::allclose(y, want, 1e-4, 1e-4));
      EXPECT_TRUE(at::allclose(y0 + 0.5 * s.Linear(x), want, 1e-4, 1e-4));
      EXPECT_TRUE(at::allclose(s.Linear(x.to(at::kDouble)), at::matmul(x.to(at::kDouble), dense.t().to(at::kDouble))));
    }

    // Embedding rows: a token repeated, one whose row is empty, one with many entries.
    int64_t empty_row = -1;
    for (int64_t r = 0; r < 70 && empty_row < 0; ++r) {
      if (off[r] == off[r + 1]) empty_row = r;
    }
    ASSERT_GE(empty_row, 0);
    const std::vector<int64_t> ids = {3, 69, 3, empty_row, 0};
    at::Generator gen = at::detail::createCPUGenerator(5);
    at::Tensor e = at::randn({5, cols_n}, gen);
    const at::Tensor e0 = e.clone();
    std::vector<float*> e_rows;
    for (int64_t i = 0; i < 5; ++i) e_rows.push_back(e.data_ptr<float>() + i * cols_n);
    SparseRowsGatherAdd(s, -2.0f, ids.data(), 5, e_rows.data());
    const at::Tensor id_t = at::tensor(ids, at::kLong);
    EXPECT_TRUE(at::allclose(e, e0 - 2.0 * dense.index_select(0, id_t), 1e-6, 1e-6));
    EXPECT_TRUE(at::equal(s.GatherRows(id_t, at::kFloat), dense.index_select(0, id_t)));
    EXPECT_EQ(s.GatherRows(id_t, at::kDouble).scalar_type(), at::kDouble);
  }
}

TEST(SparseRowsTest, AnEmptyMatrixAddsNothing) {
  const auto [s, dense] = RandomSparse(8, 4, 0, 1);
  const at::Tensor x = at::ones({2, 4});
  EXPECT_TRUE(at::equal(s.Linear(x), at::zeros({2, 8})));
  EXPECT_TRUE(at::equal(s.GatherRows(at::tensor({1, 7}, at::kLong), at::kFloat), at::zeros({2, 4})));
}

TEST(SparseRowsTest, ChecksNameWhatIsWrong) {
  const auto [good, dense] = RandomSparse(10, 6, 20, 3);
  // Each content check runs in place on contiguous CPU tensors and through
  // ATen otherwise (here: strided views of the same values): both name the
  // same fault.
  auto strided = [](const at::Tensor& t) { return t.defined() ? at::stack({t, t}, 1).select(1, 0) : t; };
  auto check = [&](const SparseRows& s) {
    SparseRows v = s;
    v.cols = strided(s.cols);
    v.values = strided(s.values);
    const std::string in_place(CheckSparseRows(s, 10, 6).message());
    EXPECT_EQ(std::string(CheckSparseRows(v, 10, 6).message()), in_place);
    return in_place;
  };
  EXPECT_EQ(check(good), "");
  EXPECT_TRUE(CheckSparseRows(good, 10, 6).ok());
  EXPECT_THAT(std::string(CheckSparseRows(good, 11, 6).message()), HasSubstr("offsets must be int64 [12]"));
  EXPECT_THAT(std::string(CheckSparseRows(good, 10, 7).message()), HasSubstr("num_cols 6, expected 7"));
  SparseRows s = good;
  s.values = good.values.to(at::kDouble);
  EXPECT_THAT(check(s), HasSubstr("values must be float16 or float32"));
  s = good;
  s.cols = good.cols.to(at::kLong);
  EXPECT_THAT(check(s), HasSubstr("cols must be int32 (or int16 up to 32768 columns) [20]"));
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
