// Prometheus metrics for skillpack: thread-safe counters, gauges and histograms
// grouped in labelled families, a registry that owns them, and the text
// exposition format 0.0.4 that GET /metrics serves (see metrics_http.h).
//
// Written here rather than taken from prometheus-cpp (not packaged on our
// platform). Naming follows Prometheus practice: `skillpack_` prefix, base
// units (`_seconds`, `_bytes`), counters end in `_total`, label values come
// from bounded sets (a pack name, a status code: never a request id).
//
// Usage:
//   MetricsRegistry registry;
//   Counter& ok = registry
//       .AddCounter("skillpack_requests_total", "Requests served.", {"code"})
//       .WithLabels({"OK"});
//   ok.Increment();                       // hot path: lock-free
//   std::string text = registry.Exposition();
//
// Registration errors (a bad name, a name registered twice with a different
// shape, the wrong number of label values) are programming errors: metric
// names and label names are compile-time constants, so they abort the process
// with a message on stderr instead of returning a Status every caller would
// have to thread through.
#ifndef SKILLPACK_SERVER_METRICS_H_
#define SKILLPACK_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace skillpack {

// A monotonically increasing value. Thread-safe and lock-free.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `v`. REQUIRES: v >= 0. A negative or NaN `v` is dropped so that the
  // counter never goes down (Prometheus treats a decrease as a restart).
  void Increment(double v = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down. Thread-safe and lock-free.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with fixed upper bounds (inclusive, the
// Prometheus `le`), plus their sum. The +Inf bucket is implicit. Thread-safe
// and lock-free; a snapshot taken during concurrent Observe() calls may see
// `sum` and the bucket counts from slightly different instants, but its
// counts are always cumulative and `count` always equals the +Inf bucket.
class Histogram {
 public:
  // REQUIRES: `upper_bounds` strictly increasing and finite (the registry
  // validates this before constructing one).
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records `v`: it lands in the first bucket whose bound is >= v (NaN and
  // values above the last bound land in +Inf only).
  void Observe(double v);

  struct Snapshot {
    std::vector<double> upper_bounds;         // without +Inf
    std::vector<uint64_t> cumulative_counts;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;  // == cumulative_counts.back()
  };
  Snapshot TakeSnapshot() const;

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }

 private:
  const std::vector<double> upper_bounds_;
  // Non-cumulative per-bucket counts: upper_bounds_.size() + 1 entries.
  std::unique_ptr<std::atomic<uint64_t>[]> bucket_counts_;
  std::atomic<double> sum_{0};
};

// Returns `count` bucket bounds start, start*factor, start*factor^2, ...
// REQUIRES: start > 0, factor > 1, count >= 1 (aborts otherwise).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// Returns `count` bucket bounds start, start+width, start+2*width, ...
// REQUIRES: width > 0, count >= 1 (aborts otherwise).
std::vector<double> LinearBuckets(double start, double width, int count);

// Formats `v` as the text format wants it: "+Inf", "-Inf", "NaN", integers up
// to 2^53 without exponent, anything else in the shortest form that reads back
// to the same double. Go's strconv.ParseFloat accepts every output.
std::string FormatMetricValue(double v);

namespace metrics_internal {

enum class MetricType { kCounter, kGauge, kHistogram };
const char* MetricTypeName(MetricType type);

// Aborts the process with `message` on stderr (registration errors).
[[noreturn]] void Die(const std::string& message);

// Appends `name{l1="v1",...,extra} value\n` with label values escaped.
// `extra_label` (e.g. `le="0.5"`, already escaped) is appended when non-empty.
void AppendSample(const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const std::string& extra_label, double value,
                  std::string* out);

void AppendSeries(const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Counter& metric, std::string* out);
void AppendSeries(const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Gauge& metric, std::string* out);
void AppendSeries(const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Histogram& metric, std::string* out);

template <typename M>
struct TypeOf;
template <>
struct TypeOf<Counter> {
  static constexpr MetricType kValue = MetricType::kCounter;
};
template <>
struct TypeOf<Gauge> {
  static constexpr MetricType kValue = MetricType::kGauge;
};
template <>
struct TypeOf<Histogram> {
  static constexpr MetricType kValue = MetricType::kHistogram;
};

// What the registry knows of every family, whatever its metric type.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
             std::vector<double> buckets)
      : name_(std::move(name)),
        help_(std::move(help)),
        type_(type),
        label_names_(std::move(label_names)),
        buckets_(std::move(buckets)) {}
  virtual ~FamilyBase() = default;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Histogram bucket bounds (without +Inf); empty for other types.
  const std::vector<double>& buckets() const { return buckets_; }

  // Appends every series' samples (no HELP/TYPE lines), sorted by label
  // values.
  virtual void AppendSamples(std::string* out) const = 0;

 private:
  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const std::vector<double> buckets_;
};

// A family whose single value is read from a callback at exposition time.
class CallbackFamily : public FamilyBase {
 public:
  CallbackFamily(std::string name, std::string help, MetricType type, std::function<double()> read)
      : FamilyBase(std::move(name), std::move(help), type, {}, {}), read_(std::move(read)) {}
  void AppendSamples(std::string* out) const override;

 private:
  const std::function<double()> read_;
};

}  // namespace metrics_internal

// All series of one metric: one per distinct tuple of label values.
template <typename M>
class Family : public metrics_internal::FamilyBase {
 public:
  // Made by MetricsRegistry; `make` builds one new series; `buckets` is
  // empty except for histograms.
  Family(std::string name, std::string help, std::vector<std::string> label_names, std::vector<double> buckets,
         std::function<std::unique_ptr<M>()> make)
      : FamilyBase(std::move(name), std::move(help), metrics_internal::TypeOf<M>::kValue, std::move(label_names),
                   std::move(buckets)),
        make_(std::move(make)) {
    // A family without labels has exactly one series; create it now so that
    // it is exposed (as 0) before its first use.
    if (this->label_names().empty()) WithLabels({});
  }

  // Returns the series for `values` (in label_names() order), creating it on
  // first use. The reference stays valid as long as the registry lives, so
  // hot paths should look it up once and keep it.
  // REQUIRES: values.size() == label_names().size() (aborts otherwise).
  M& WithLabels(const std::vector<std::string>& values) ABSL_LOCKS_EXCLUDED(mu_) {
    if (values.size() != label_names().size()) {
      metrics_internal::Die("metric " + name() + ": expected " + std::to_string(label_names().size()) +
                            " label values, got " + std::to_string(values.size()));
    }
    absl::MutexLock lock(&mu_);
    std::unique_ptr<M>& slot = series_[values];
    if (slot == nullptr) slot = make_();
    return *slot;
  }

  // Number of series created so far.
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return series_.size();
  }

  void AppendSamples(std::string* out) const override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const auto& [values, metric] : series_) {
      metrics_internal::AppendSeries(name(), label_names(), values, *metric, out);
    }
  }

 private:
  const std::function<std::unique_ptr<M>()> make_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> series_ ABSL_GUARDED_BY(mu_);
};

// Owns metric families and renders them. Thread-safe: families may be added
// and series updated while another thread renders the exposition.
//
// Registering a name that already exists returns the existing family when
// type, help, label names (and buckets) are identical, and aborts otherwise.
// A name also may not collide with another family's sample names (a histogram
// `x` owns `x_bucket`, `x_sum` and `x_count`). Families live as long as the
// registry; there is no unregistration.
class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // REQUIRES: `name` matches [a-zA-Z_:][a-zA-Z0-9_:]* and ends in `_total`;
  // each label name matches [a-zA-Z_][a-zA-Z0-9_]*, does not start with `__`,
  // and appears once.
  Family<Counter>& AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});

  // REQUIRES: as AddCounter, except that `name` must not end in `_total`.
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help, std::vector<std::string> label_names = {});

  // REQUIRES: as AddGauge; no label is named `le`; `buckets` strictly
  // increasing and not NaN. A trailing +Inf is accepted and dropped (the +Inf
  // bucket is always exposed); -Inf is refused.
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help, std::vector<double> buckets,
                                  std::vector<std::string> label_names = {});

  // Label-less counter and gauge whose value `read` returns at exposition
  // time (e.g. process memory). `read` runs while the registry is locked for
  // reading: it must be thread-safe and must not call into this registry.
  // Same naming rules as AddCounter / AddGauge; registering a name twice
  // aborts (callbacks cannot be compared).
  void AddCounterCallback(const std::string& name, const std::string& help, std::function<double()> read);
  void AddGaugeCallback(const std::string& name, const std::string& help, std::function<double()> read);

  // Renders every family in the Prometheus text format 0.0.4, families sorted
  // by name, each as `# HELP`, `# TYPE` and its samples sorted by label
  // values; histograms as cumulative `_bucket{le="..."}`, then `_sum` and
  // `_count`. HELP text escapes `\` and newline; label values escape `\`, `"`
  // and newline.
  std::string Exposition() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Validates and inserts `family`; returns the stored family (an existing
  // identical one wins when `may_reuse`). Aborts on conflicts.
  metrics_internal::FamilyBase* Register(std::unique_ptr<metrics_internal::FamilyBase> family, bool may_reuse)
      ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<metrics_internal::FamilyBase>> families_ ABSL_GUARDED_BY(mu_);
  // Every sample name a family emits -> that family's name.
  std::map<std::string, std::string> sample_names_ ABSL_GUARDED_BY(mu_);
};

// Registers the standard process metrics, read from /proc at exposition time:
// process_resident_memory_bytes, process_virtual_memory_bytes,
// process_cpu_seconds_total, process_open_fds and process_start_time_seconds
// (Unix time). Call at most once per registry.
void RegisterProcessMetrics(MetricsRegistry* registry);

}  // namespace skillpack

#endif  // SKILLPACK_SERVER_METRICS_H_
