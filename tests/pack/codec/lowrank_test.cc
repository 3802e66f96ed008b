#include "pack/codec/lowrank.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "gtest/gtest.h"

namespace skillpack {
namespace {

double SquaredNorm(const at::Tensor& t) { return t.square().sum(at::kDouble).item<double>(); }

at::Tensor Reconstruct(const LowRank& f) { return at::mm(f.u * f.s.unsqueeze(0), f.v.t()); }

// Energy kept by the leading j singular values of `s` (descending).
double Kept(const at::Tensor& s, int64_t j) { return s.slice(0, 0, j).to(at::kDouble).square().sum().item<double>(); }

// Random matrix with orthonormal factors and the given singular values.
at::Tensor WithSpectrum(int64_t m, int64_t n, const at::Tensor& s, at::Generator& gen) {
  const int64_t r = s.size(0);
  const at::Tensor u = std::get<0>(at::linalg_qr(at::randn({m, r}, gen), "reduced"));
  const at::Tensor v = std::get<0>(at::linalg_qr(at::randn({n, r}, gen), "reduced"));
  return at::mm(u * s.unsqueeze(0), v.t());
}

TEST(EnergyRankTest, HandMadeValues) {
  const at::Tensor s = at::tensor({3.0f, 2.0f, 1.0f});
  // Energies 9, 13, 14 of 14.
  EXPECT_EQ(EnergyRank(s, 0.9), 2);   // needs 12.6
  EXPECT_EQ(EnergyRank(s, 0.6), 1);   // needs 8.4
  EXPECT_EQ(EnergyRank(s, 0.95), 3);  // needs 13.3
  EXPECT_EQ(EnergyRank(s, 1.0), 3);
  // Order does not matter.
  EXPECT_EQ(EnergyRank(at::tensor({1.0f, 3.0f, 2.0f}), 0.9), 2);
  // beta = 1 gives the number of nonzero values.
  EXPECT_EQ(EnergyRank(at::tensor({5.0, 4.0, 0.5, 0.0, 0.0}), 1.0), 3);
  EXPECT_EQ(EnergyRank(at::zeros({4}), 0.9), 0);
  EXPECT_EQ(EnergyRank(at::zeros({0}), 0.9), 0);
  EXPECT_EQ(EnergyRankOfTotal(s, 0.9, 14.0), 2);
  EXPECT_EQ(EnergyRankOfTotal(s, 0.9, 20.0), -1);  // 13 < 18 within s
  EXPECT_EQ(EnergyRankOfTotal(s, 0.5, 20.0), 2);   // 13 >= 10
  EXPECT_EQ(EnergyRankOfTotal(s, 0.5, 0.0), 0);
}

TEST(TruncatedSvdTest, ExactRankFiveMatrix) {
  at::Generator gen = at::detail::createCPUGenerator(1);
  const at::Tensor a = at::mm(at::randn({300, 5}, gen), at::randn({5, 200}, gen));
  auto f = TruncatedSvd(a, 0.999, kNoRankCap);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->rank(), 5);
  EXPECT_EQ(f->u.sizes(), (at::IntArrayRef{300, 5}));
  EXPECT_EQ(f->v.sizes(), (at::IntArrayRef{200, 5}));
  EXPECT_EQ(f->s.scalar_type(), at::kFloat);
  const double rel = std::sqrt(SquaredNorm(a - Reconstruct(*f)) / SquaredNorm(a));
  EXPECT_LT(rel, 1e-5);
  // Orthonormal factors.
  EXPECT_TRUE(at::allclose(at::mm(f->u.t(), f->u), at::eye(5), 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(at::mm(f->v.t(), f->v), at::eye(5), 1e-4, 1e-4));
  // Capped.
  auto capped = TruncatedSvd(a, 0.999, 3);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->rank(), 3);
  EXPECT_TRUE(at::allclose(capped->s, f->s.slice(0, 0, 3)));
  auto none = TruncatedSvd(a, 0.999, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->rank(), 0);
  EXPECT_EQ(none->u.sizes(), (at::IntArrayRef{300, 0}));
}

TEST(TruncatedSvdTest, ChosenRankIsSmallestMeetingBeta) {
  at::Generator gen = at::detail::createCPUGenerator(2);
  const at::Tensor a = at::randn({120, 90}, gen);  // flat-ish spectrum
  const at::Tensor s_all = at::linalg_svdvals(a);
  const double total = SquaredNorm(a);
  for (double beta : {0.3, 0.5, 0.8, 0.95, 0.99}) {
    auto f = TruncatedSvd(a, beta, kNoRankCap);
    ASSERT_TRUE(f.ok());
    const int64_t k = f->rank();
    ASSERT_GT(k, 0);
    EXPECT_GE(Kept(s_all, k), beta * total * (1 - 1e-6)) << "beta=" << beta;
    EXPECT_LT(Kept(s_all, k - 1), beta * total) << "beta=" << beta;
    // The kept energy is the reconstruction's: ||A - A_k||^2 = total - kept.
    EXPECT_NEAR(SquaredNorm(a - Reconstruct(*f)), total - Kept(f->s, k), 1e-3 * total);
  }
}

TEST(TruncatedSvdTest, ZeroAndBadInputs) {
  auto z = TruncatedSvd(at::zeros({10, 7}), 0.9, kNoRankCap);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->rank(), 0);
  EXPECT_EQ(z->v.sizes(), (at::IntArrayRef{7, 0}));
  const at::Tensor a = at::randn({6, 5});
  EXPECT_EQ(TruncatedSvd(a, 0.0, kNoRankCap).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TruncatedSvd(a, 1.5, kNoRankCap).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TruncatedSvd(at::randn({6}), 0.9, kNoRankCap).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TruncatedSvd(at::ones({3, 3}, at::kInt), 0.9, 2).status().code(), absl::StatusCode::kInvalidArgument);
  at::Tensor bad = a.clone();
  bad[2][3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(TruncatedSvd(bad, 0.9, kNoRankCap).status().code(), absl::StatusCode::kInvalidArgument);
  // beta = 1 keeps everything.
  auto full = TruncatedSvd(a, 1.0, kNoRankCap);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->rank(), 5);
}

TEST(TruncatedSvdTest, RandomizedPathOnSmallMatrixForced) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor a = at::mm(at::randn({300, 5}, gen), at::randn({5, 200}, gen));
  SvdOptions opts;
  opts.exact_max_dim = 16;  // force the sketch
  auto f = TruncatedSvd(a, 0.999, kNoRankCap, opts);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->rank(), 5);
  EXPECT_LT(std::sqrt(SquaredNorm(a - Reconstruct(*f)) / SquaredNorm(a)), 1e-4);
  // Small initial rank: the sketch must grow (8 -> 16 -> 32 ...) to reach beta
  // on a full-rank matrix with a slowly decaying spectrum.
  const at::Tensor s_true = at::pow(0.95, at::arange(200, at::kDouble)).to(at::kFloat);
  const at::Tensor b = WithSpectrum(600, 200, s_true, gen);
  opts.exact_max_dim = 16;
  opts.initial_rank = 8;
  auto g = TruncatedSvd(b, 0.95, kNoRankCap, opts);
  ASSERT_TRUE(g.ok()) << g.status();
  const int64_t k_true = EnergyRank(s_true, 0.95);
  EXPECT_GE(g->rank(), k_true);
  EXPECT_LE(g->rank(), k_true + 1);
  EXPECT_LE(SquaredNorm(b - Reconstruct(*g)), (1 - 0.95) * SquaredNorm(b) * 1.001);
}

TEST(TruncatedSvdTest, RandomizedMatchesExactRankOnLargeMatrix) {
  at::Generator gen = at::detail::createCPUGenerator(4);
  const int64_t m = 2048, n = 1536;
  // Full-rank, decaying spectrum: s_i = 10 * 0.97^i.
  const at::Tensor s_true = (10.0 * at::pow(0.97, at::arange(n, at::kDouble))).to(at::kFloat);
  auto t0 = std::chrono::steady_clock::now();
  const at::Tensor a = WithSpectrum(m, n, s_true, gen);
  auto t1 = std::chrono::steady_clock::now();
  for (double beta : {0.9, 0.99}) {
    auto t2 = std::chrono::steady_clock::now();
    auto f = TruncatedSvd(a, beta, kNoRankCap);  // min(m, n) > 1024: sketch
    auto t3 = std::chrono::steady_clock::now();
    ASSERT_TRUE(f.ok()) << f.status();
    const int64_t k_exact = EnergyRank(s_true, beta);
    const int64_t k = f->rank();
    std::printf(
        "%ldx%ld beta=%.2f: randomized k=%ld exact k=%ld, %.3f s "
        "(building the matrix took %.3f s)\n",
        m, n, beta, k, k_exact, std::chrono::duration<double>(t3 - t2).count(),
        std::chrono::duration<double>(t1 - t0).count());
    EXPECT_GE(k, k_exact);  // the sketch never undershoots
    EXPECT_LE(k, k_exact + 1);
    const double total = SquaredNorm(a);
    const double residual = SquaredNorm(a - Reconstruct(*f));
    EXPECT_LE(residual, (1 - beta) * total * 1.001) << "beta=" << beta;
    // Leading singular values are accurate.
    EXPECT_TRUE(at::allclose(f->s.slice(0, 0, 10), s_true.slice(0, 0, 10), 1e-3, 1e-3));
  }
  // The exact SVD path (forced) agrees on k; timing for comparison.
  SvdOptions exact;
  exact.exact_max_dim = n;
  auto t4 = std::chrono::steady_clock::now();
  auto e = TruncatedSvd(a, 0.99, kNoRankCap, exact);
  auto t5 = std::chrono::steady_clock::now();
  ASSERT_TRUE(e.ok()) << e.status();
  std::printf("exact SVD path: k=%ld, %.3f s\n", e->rank(), std::chrono::duration<double>(t5 - t4).count());
  EXPECT_EQ(e->rank(), EnergyRank(s_true, 0.99));
  // With a cap the sketch stops at the cap.
  auto c = TruncatedSvd(a, 0.99, 20);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rank(), 20);
  EXPECT_TRUE(at::allclose(c->s, s_true.slice(0, 0, 20), 1e-3, 1e-3));
}

// tr(e H eᵀ): the output error of e for inputs with second moment H.
double OutputError(const at::Tensor& e, const at::Tensor& h) {
  const at::Tensor d = e.to(at::kDouble);
  return at::trace(at::mm(at::mm(d, h.to(at::kDouble)), d.t())).item<double>();
}

// With H = I the whitened factors reconstruct what TruncatedSvd's do.
TEST(WhitenedTruncatedSvdTest, IdentityHessianIsThePlainSvd) {
  at::Generator gen = at::detail::createCPUGenerator(11);
  const at::Tensor delta = WithSpectrum(40, 30, at::tensor({6.0f, 4.0f, 3.0f, 1.0f, 0.5f}), gen);
  auto plain = TruncatedSvd(delta, 1.0, 3);
  auto white = WhitenedTruncatedSvd(delta, at::eye(30), 1.0, 3, 1e-9);
  ASSERT_TRUE(plain.ok() && white.ok()) << white.status();
  ASSERT_EQ(white->rank(), 3);
  EXPECT_TRUE(at::allclose(Reconstruct(*white), Reconstruct(*plain), 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(white->s, plain->s, 1e-4, 1e-4));
}

// Inputs of very unequal scales: the whitened rank-k factors leave the output
// error of the best rank-k approximation for that error, which is the tail
// energy of Δ S (H = S Sᵀ), well under what the plain SVD's leave.
TEST(WhitenedTruncatedSvdTest, MinimisesTheOutputError) {
  at::Generator gen = at::detail::createCPUGenerator(12);
  const int64_t m = 48, n = 32, k = 6;
  const at::Tensor delta = at::randn({m, n}, gen);
  // H = A diag(scales²) Aᵀ for a random rotation A: a few loud input directions.
  const at::Tensor a = std::get<0>(at::linalg_qr(at::randn({n, n}, gen), "reduced"));
  const at::Tensor scales = at::exp(at::linspace(2.0, -3.0, n));
  const at::Tensor h = at::mm(a * scales.square().unsqueeze(0), a.t());
  auto plain = TruncatedSvd(delta, 1.0, k);
  auto white = WhitenedTruncatedSvd(delta, h, 1.0, k, 1e-9);
  ASSERT_TRUE(plain.ok() && white.ok()) << white.status();
  ASSERT_EQ(white->rank(), k);
  const double e_plain = OutputError(delta - Reconstruct(*plain), h);
  const double e_white = OutputError(delta - Reconstruct(*white), h);
  EXPECT_LT(e_white, 0.5 * e_plain) << "whitened " << e_white << " plain " << e_plain;
  // The optimum: the tail of Δ S's spectrum.
  const at::Tensor s_all = at::linalg_svdvals(at::mm(delta.to(at::kDouble), at::linalg_cholesky(h.to(at::kDouble))));
  const double tail = s_all.slice(0, k).square().sum().item<double>();
  EXPECT_NEAR(e_white, tail, 1e-3 * tail);
  // And no random rank-k matrix does better.
  for (int t = 0; t < 5; ++t) {
    const at::Tensor other = at::mm(at::randn({m, k}, gen), at::randn({k, n}, gen)) * 0.1 + Reconstruct(*white);
    auto best = TruncatedSvd(other, 1.0, k);
    ASSERT_TRUE(best.ok());
    EXPECT_GE(OutputError(delta - Reconstruct(*best), h), e_white);
  }
  // beta applies to the output energy: rank 1 keeps the loudest direction.
  auto one = WhitenedTruncatedSvd(delta, h, 1e-6, kNoRankCap);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->rank(), 1);
}

TEST(WhitenedTruncatedSvdTest, SingularDeadAndBadHessians) {
  at::Generator gen = at::detail::createCPUGenerator(13);
  const at::Tensor delta = at::randn({10, 6}, gen);
  // Rank-deficient H (an input that never moves): the damping makes it factor.
  at::Tensor h = at::eye(6);
  h[5][5] = 0;
  auto deficient = WhitenedTruncatedSvd(delta, h, 1.0, 3);
  ASSERT_TRUE(deficient.ok()) << deficient.status();
  EXPECT_EQ(deficient->rank(), 3);
  EXPECT_TRUE(at::isfinite(Reconstruct(*deficient)).all().item<bool>());
  // A dead input everywhere: the plain SVD.
  auto dead = WhitenedTruncatedSvd(delta, at::zeros({6, 6}), 1.0, 3);
  auto plain = TruncatedSvd(delta, 1.0, 3);
  ASSERT_TRUE(dead.ok() && plain.ok());
  EXPECT_TRUE(at::allclose(Reconstruct(*dead), Reconstruct(*plain), 1e-5, 1e-5));
  EXPECT_EQ(WhitenedTruncatedSvd(delta, at::eye(5), 1.0, 3).status().code(), absl::StatusCode::kInvalidArgument);
  at::Tensor nan = at::eye(6);
  nan[0][1] = NAN;
  EXPECT_EQ(WhitenedTruncatedSvd(delta, nan, 1.0, 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WhitenedTruncatedSvd(delta, at::eye(6), 1.0, 3, 0.0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WhitenedTruncatedSvd(delta, -at::eye(6), 1.0, 3).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace skillpack
