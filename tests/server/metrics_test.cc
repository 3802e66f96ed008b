// Tests for server/metrics.h: exact exposition text, escaping, number
// formatting, registration rules and concurrent updates.
#include "server/metrics.h"

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace skillpack {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsExpositionTest, WholeTextForHandBuiltRegistry) {
  MetricsRegistry registry;
  auto& requests = registry.AddCounter("skillpack_requests_total", "Requests served.", {"pack", "code"});
  requests.WithLabels({"reverse", "OK"}).Increment(1.5);
  requests.WithLabels({"math", "UNAVAILABLE"}).Increment();
  requests.WithLabels({"math", "OK"}).Increment();
  requests.WithLabels({"math", "OK"}).Increment();
  registry.AddGauge("skillpack_loaded_packs", "Packs loaded.").WithLabels({}).Set(3);
  Histogram& latency =
      registry.AddHistogram("skillpack_request_duration_seconds", "Request latency.", {0.1, 0.5, 1}, {"pack"})
          .WithLabels({"math"});
  latency.Observe(0.0625);
  latency.Observe(0.5);  // bounds are inclusive: lands in le="0.5"
  latency.Observe(0.75);
  latency.Observe(3);

  EXPECT_EQ(registry.Exposition(),
            "# HELP skillpack_loaded_packs Packs loaded.\n"
            "# TYPE skillpack_loaded_packs gauge\n"
            "skillpack_loaded_packs 3\n"
            "# HELP skillpack_request_duration_seconds Request latency.\n"
            "# TYPE skillpack_request_duration_seconds histogram\n"
            "skillpack_request_duration_seconds_bucket{pack=\"math\",le=\"0.1\"} 1\n"
            "skillpack_request_duration_seconds_bucket{pack=\"math\",le=\"0.5\"} 2\n"
            "skillpack_request_duration_seconds_bucket{pack=\"math\",le=\"1\"} 3\n"
            "skillpack_request_duration_seconds_bucket{pack=\"math\",le=\"+Inf\"} 4\n"
            "skillpack_request_duration_seconds_sum{pack=\"math\"} 4.3125\n"
            "skillpack_request_duration_seconds_count{pack=\"math\"} 4\n"
            "# HELP skillpack_requests_total Requests served.\n"
            "# TYPE skillpack_requests_total counter\n"
            "skillpack_requests_total{pack=\"math\",code=\"OK\"} 2\n"
            "skillpack_requests_total{pack=\"math\",code=\"UNAVAILABLE\"} 1\n"
            "skillpack_requests_total{pack=\"reverse\",code=\"OK\"} 1.5\n");
}

TEST(MetricsExpositionTest, LabelLessHistogram) {
  MetricsRegistry registry;
  Histogram& h = registry.AddHistogram("skillpack_pack_load_seconds", "Load time.", {1, 2}).WithLabels({});
  h.Observe(1.5);
  EXPECT_EQ(registry.Exposition(),
            "# HELP skillpack_pack_load_seconds Load time.\n"
            "# TYPE skillpack_pack_load_seconds histogram\n"
            "skillpack_pack_load_seconds_bucket{le=\"1\"} 0\n"
            "skillpack_pack_load_seconds_bucket{le=\"2\"} 1\n"
            "skillpack_pack_load_seconds_bucket{le=\"+Inf\"} 1\n"
            "skillpack_pack_load_seconds_sum 1.5\n"
            "skillpack_pack_load_seconds_count 1\n");
}

TEST(MetricsExpositionTest, EmptyRegistryIsEmptyText) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.Exposition(), "");
}

TEST(MetricsExpositionTest, LabelLessFamilyIsExposedAtZeroBeforeUse) {
  MetricsRegistry registry;
  registry.AddCounter("skillpack_errors_total", "Errors.");
  EXPECT_EQ(registry.Exposition(),
            "# HELP skillpack_errors_total Errors.\n"
            "# TYPE skillpack_errors_total counter\n"
            "skillpack_errors_total 0\n");
}

TEST(MetricsExpositionTest, LabelledFamilyWithoutSeriesIsLeftOut) {
  MetricsRegistry registry;
  auto& family = registry.AddCounter("skillpack_errors_total", "Errors.", {"code"});
  EXPECT_EQ(registry.Exposition(), "");
  family.WithLabels({"INTERNAL"});
  EXPECT_THAT(registry.Exposition(), HasSubstr("skillpack_errors_total{code=\"INTERNAL\"} 0\n"));
}

TEST(MetricsExpositionTest, EscapesHelpAndLabelValues) {
  MetricsRegistry registry;
  registry.AddGauge("skillpack_x", "Line one\nback\\slash \"quoted\"", {"name"}).WithLabels({"a\"b\\c\nd"}).Set(1);
  // HELP escapes backslash and newline only; label values also escape '"'.
  EXPECT_EQ(registry.Exposition(),
            "# HELP skillpack_x Line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE skillpack_x gauge\n"
            "skillpack_x{name=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsExpositionTest, UnicodeLabelValuesPassThrough) {
  MetricsRegistry registry;
  registry.AddGauge("skillpack_x", "X.", {"name"}).WithLabels({"caf\xC3\xA9"}).Set(1);
  EXPECT_THAT(registry.Exposition(), HasSubstr("skillpack_x{name=\"caf\xC3\xA9\"} 1\n"));
}

TEST(FormatMetricValueTest, SpecialValuesAndIntegers) {
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(42), "42");
  EXPECT_EQ(FormatMetricValue(-7), "-7");
  EXPECT_EQ(FormatMetricValue(1e6), "1000000");
  EXPECT_EQ(FormatMetricValue(9007199254740992.0), "9007199254740992");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(2.5), "2.5");
  EXPECT_EQ(FormatMetricValue(1e-7), "1e-07");
  EXPECT_EQ(FormatMetricValue(1e300), "1e+300");
}

TEST(FormatMetricValueTest, RoundTripsThroughStrtod) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mantissa(-10, 10);
  std::uniform_int_distribution<int> exponent(-30, 30);
  for (int i = 0; i < 10000; ++i) {
    const double v = mantissa(rng) * std::pow(10.0, exponent(rng));
    const std::string text = FormatMetricValue(v);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
}

TEST(MetricsTest, CounterDropsNegativeAndNaNIncrements) {
  Counter c;
  c.Increment(2);
  c.Increment(-1);
  c.Increment(std::nan(""));
  EXPECT_EQ(c.value(), 2);
}

TEST(MetricsTest, GaugeSetAndAdd) {
  Gauge g;
  g.Set(5);
  g.Add(-7.5);
  EXPECT_EQ(g.value(), -2.5);
}

TEST(MetricsTest, HistogramSnapshotIsCumulative) {
  Histogram h({1, 10});
  h.Observe(0.5);
  h.Observe(1);
  h.Observe(5);
  h.Observe(100);
  h.Observe(std::nan(""));  // counted in +Inf only
  const Histogram::Snapshot s = h.TakeSnapshot();
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{2, 3, 5}));
  EXPECT_EQ(s.count, 5u);
  EXPECT_TRUE(std::isnan(s.sum));
}

TEST(MetricsTest, BucketHelpers) {
  EXPECT_EQ(ExponentialBuckets(0.001, 2, 4), (std::vector<double>{0.001, 0.002, 0.004, 0.008}));
  EXPECT_EQ(LinearBuckets(1, 0.5, 3), (std::vector<double>{1, 1.5, 2}));
}

TEST(MetricsTest, TrailingInfBucketIsDropped) {
  MetricsRegistry registry;
  auto& family = registry.AddHistogram("skillpack_h_seconds", "H.", {1, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(family.buckets(), (std::vector<double>{1}));
  EXPECT_EQ(family.WithLabels({}).upper_bounds(), (std::vector<double>{1}));
}

TEST(MetricsTest, WithLabelsReturnsStableReferences) {
  MetricsRegistry registry;
  auto& family = registry.AddCounter("skillpack_c_total", "C.", {"k"});
  Counter* first = &family.WithLabels({"a"});
  for (int i = 0; i < 1000; ++i) family.WithLabels({std::to_string(i)});
  EXPECT_EQ(&family.WithLabels({"a"}), first);
  EXPECT_EQ(family.size(), 1001u);
}

TEST(MetricsTest, IdenticalRegistrationReturnsTheSameFamily) {
  MetricsRegistry registry;
  auto& a = registry.AddCounter("skillpack_c_total", "C.", {"k"});
  auto& b = registry.AddCounter("skillpack_c_total", "C.", {"k"});
  EXPECT_EQ(&a, &b);
  auto& h1 = registry.AddHistogram("skillpack_h_seconds", "H.", {1, 2});
  auto& h2 = registry.AddHistogram("skillpack_h_seconds", "H.", {1, 2});
  EXPECT_EQ(&h1, &h2);
}

TEST(MetricsTest, ProcessMetrics) {
  MetricsRegistry registry;
  RegisterProcessMetrics(&registry);
  const std::string text = registry.Exposition();
  auto value_of = [&text](const std::string& name) {
    const std::string prefix = "\n" + name + " ";
    const size_t at = text.find(prefix);
    if (at == std::string::npos) return std::nan("");
    return std::strtod(text.c_str() + at + prefix.size(), nullptr);
  };
  EXPECT_GT(value_of("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(value_of("process_virtual_memory_bytes"), value_of("process_resident_memory_bytes"));
  EXPECT_GE(value_of("process_cpu_seconds_total"), 0);
  EXPECT_GE(value_of("process_open_fds"), 3);  // at least stdin/out/err
  const double now = static_cast<double>(std::time(nullptr));
  const double start = value_of("process_start_time_seconds");
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 3600);
  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter\n"));
  EXPECT_THAT(text, Not(HasSubstr("NaN")));
}

TEST(MetricsConcurrencyTest, EightThreadsHundredThousandIncrementsEach) {
  constexpr int kThreads = 8;
  constexpr int kIncrements = 100000;
  MetricsRegistry registry;
  auto& counters = registry.AddCounter("skillpack_c_total", "C.", {"k"});
  Counter& shared = counters.WithLabels({"shared"});
  Gauge& gauge = registry.AddGauge("skillpack_g", "G.").WithLabels({});
  Histogram& histogram = registry.AddHistogram("skillpack_h_seconds", "H.", {0.5}).WithLabels({});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& own = counters.WithLabels({std::to_string(t)});
      for (int i = 0; i < kIncrements; ++i) {
        shared.Increment();
        own.Increment(0.5);
        gauge.Add(i % 2 == 0 ? 1 : -1);
        histogram.Observe(i % 2 == 0 ? 0.25 : 1);
        // Lookups and renders race with updates.
        if (i % 10000 == 0) {
          counters.WithLabels({"shared"});
          registry.Exposition();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(shared.value(), kThreads * kIncrements);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(counters.WithLabels({std::to_string(t)}).value(), kIncrements * 0.5);
  }
  EXPECT_EQ(gauge.value(), 0);
  const Histogram::Snapshot s = histogram.TakeSnapshot();
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{kThreads * kIncrements / 2, kThreads * kIncrements}));
  EXPECT_EQ(s.sum, kThreads * (kIncrements / 2) * 1.25);
  EXPECT_THAT(registry.Exposition(), HasSubstr("skillpack_c_total{k=\"shared\"} 800000\n"));
}

// Registration mistakes are programming errors and abort with a message.
class MetricsDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  MetricsRegistry registry_;
};

TEST_F(MetricsDeathTest, BadMetricNames) {
  EXPECT_DEATH(registry_.AddGauge("1abc", "X."), "invalid metric name");
  EXPECT_DEATH(registry_.AddGauge("a-b", "X."), "invalid metric name");
  EXPECT_DEATH(registry_.AddGauge("", "X."), "invalid metric name");
  EXPECT_DEATH(registry_.AddCounter("skillpack_requests", "X."), "must end in _total");
  EXPECT_DEATH(registry_.AddGauge("skillpack_x_total", "X."), "must not end in _total");
  EXPECT_DEATH(registry_.AddHistogram("skillpack_x_total", "X.", {1}), "must not end in _total");
}

TEST_F(MetricsDeathTest, BadLabelNames) {
  EXPECT_DEATH(registry_.AddGauge("skillpack_x", "X.", {"__reserved"}), "invalid label name");
  EXPECT_DEATH(registry_.AddGauge("skillpack_x", "X.", {"a:b"}), "invalid label name");
  EXPECT_DEATH(registry_.AddGauge("skillpack_x", "X.", {"9a"}), "invalid label name");
  EXPECT_DEATH(registry_.AddGauge("skillpack_x", "X.", {"a", "a"}), "duplicate label name");
  EXPECT_DEATH(registry_.AddHistogram("skillpack_x", "X.", {1}, {"le"}), "le is reserved");
}

TEST_F(MetricsDeathTest, BadBuckets) {
  EXPECT_DEATH(registry_.AddHistogram("skillpack_x", "X.", {2, 1}), "strictly increasing");
  EXPECT_DEATH(registry_.AddHistogram("skillpack_x", "X.", {1, 1}), "strictly increasing");
  EXPECT_DEATH(registry_.AddHistogram("skillpack_x", "X.", {std::nan("")}), "not finite");
  EXPECT_DEATH(ExponentialBuckets(0, 2, 3), "ExponentialBuckets");
  EXPECT_DEATH(LinearBuckets(0, 0, 3), "LinearBuckets");
}

TEST_F(MetricsDeathTest, ConflictingRegistration) {
  registry_.AddCounter("skillpack_c_total", "C.", {"k"});
  EXPECT_DEATH(registry_.AddCounter("skillpack_c_total", "C.", {"j"}), "registered twice");
  EXPECT_DEATH(registry_.AddCounter("skillpack_c_total", "Other help.", {"k"}), "registered twice");
  registry_.AddHistogram("skillpack_h", "H.", {1});
  EXPECT_DEATH(registry_.AddGauge("skillpack_h", "H."), "registered twice");
  EXPECT_DEATH(registry_.AddHistogram("skillpack_h", "H.", {2}), "registered twice");
  // A histogram owns its _bucket/_sum/_count sample names.
  EXPECT_DEATH(registry_.AddGauge("skillpack_h_count", "X."), "already emits");
  registry_.AddGaugeCallback("skillpack_cb", "CB.", [] { return 1.0; });
  EXPECT_DEATH(registry_.AddGaugeCallback("skillpack_cb", "CB.", [] { return 1.0; }), "registered twice");
}

TEST_F(MetricsDeathTest, WrongNumberOfLabelValues) {
  auto& family = registry_.AddCounter("skillpack_c_total", "C.", {"a", "b"});
  EXPECT_DEATH(family.WithLabels({"x"}), "expected 2 label values, got 1");
}

}  // namespace
}  // namespace skillpack
