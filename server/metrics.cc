#include "server/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace skillpack {
namespace {

using metrics_internal::Die;
using metrics_internal::FamilyBase;
using metrics_internal::MetricType;

// Adds `v` to an atomic double with a CAS loop (std::atomic<double>::fetch_add
// is C++20).
void AtomicAdd(std::atomic<double>* target, double v) {
  double current = target->load(std::memory_order_relaxed);
  while (!target->compare_exchange_weak(current, current + v, std::memory_order_relaxed)) {
  }
}

bool IsMetricNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool IsLabelNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsValidMetricName(const std::string& name) {
  if (name.empty() || !IsMetricNameStart(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return IsMetricNameStart(c) || IsDigit(c); });
}

bool IsValidLabelName(const std::string& name) {
  if (name.empty() || !IsLabelNameStart(name[0])) return false;
  if (name.size() >= 2 && name[0] == '_' && name[1] == '_') return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return IsLabelNameStart(c) || IsDigit(c); });
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Escapes HELP text: `\` and newline.
std::string EscapeHelp(const std::string& help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Escapes a label value: `\`, `"` and newline.
std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Names of the samples a family emits (what other families may not reuse).
std::vector<std::string> SampleNames(const FamilyBase& family) {
  if (family.type() == MetricType::kHistogram) {
    return {family.name() + "_bucket", family.name() + "_sum", family.name() + "_count"};
  }
  return {family.name()};
}

void ValidateNames(MetricType type, const std::string& name, const std::vector<std::string>& label_names) {
  if (!IsValidMetricName(name)) {
    Die(absl::StrCat("invalid metric name \"", name, "\""));
  }
  const bool total = EndsWith(name, "_total");
  if (type == MetricType::kCounter && !total) {
    Die(absl::StrCat("counter ", name, " must end in _total"));
  }
  if (type != MetricType::kCounter && total) {
    Die(absl::StrCat(metrics_internal::MetricTypeName(type), " ", name,
                     " must not end in _total (reserved for counters)"));
  }
  std::set<std::string> seen;
  for (const std::string& label : label_names) {
    if (!IsValidLabelName(label)) {
      Die(absl::StrCat("metric ", name, ": invalid label name \"", label, "\""));
    }
    if (!seen.insert(label).second) {
      Die(absl::StrCat("metric ", name, ": duplicate label name ", label));
    }
    if (type == MetricType::kHistogram && label == "le") {
      Die(absl::StrCat("histogram ", name, ": label name le is reserved"));
    }
  }
}

// Checks histogram bounds; returns them without a trailing +Inf.
std::vector<double> ValidateBuckets(const std::string& name, std::vector<double> buckets) {
  if (!buckets.empty() && std::isinf(buckets.back()) && buckets.back() > 0) {
    buckets.pop_back();
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i])) {
      Die(absl::StrCat("histogram ", name, ": bucket bound ", FormatMetricValue(buckets[i]), " is not finite"));
    }
    if (i > 0 && !(buckets[i - 1] < buckets[i])) {
      Die(absl::StrCat("histogram ", name, ": bucket bounds must be strictly increasing"));
    }
  }
  return buckets;
}

// Reads a whole small file (procfs); empty on error.
std::string ReadSmallFile(const char* path) {
  std::ifstream in(path);
  if (!in) return "";
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Fields of /proc/self/stat after the command name: element 0 is field 3
// (state) of proc(5).
std::vector<std::string> ProcSelfStatFields() {
  const std::string stat = ReadSmallFile("/proc/self/stat");
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream in(stat.substr(paren + 1));
  return std::vector<std::string>(std::istream_iterator<std::string>(in), std::istream_iterator<std::string>());
}

// Field `n` (1-based, as in proc(5)) of /proc/self/stat; NaN when unreadable.
double ProcSelfStatField(const std::vector<std::string>& fields, int n) {
  const size_t index = static_cast<size_t>(n - 3);
  if (n < 3 || index >= fields.size()) return std::nan("");
  return std::strtod(fields[index].c_str(), nullptr);
}

// Resident (`field` 1) or virtual (0) size from /proc/self/statm, in bytes.
double StatmBytes(int field) {
  std::istringstream in(ReadSmallFile("/proc/self/statm"));
  double pages[2] = {std::nan(""), std::nan("")};
  in >> pages[0] >> pages[1];
  if (!in) return std::nan("");
  return pages[field] * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return std::nan("");
  double count = 0;
  while (const struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the descriptor opendir() itself holds
}

// Process start as Unix time: boot time (/proc/stat btime) plus the start
// offset in clock ticks (/proc/self/stat field 22).
double ProcessStartTimeSeconds() {
  std::istringstream in(ReadSmallFile("/proc/stat"));
  std::string line;
  double boot_time = std::nan("");
  while (std::getline(in, line)) {
    if (line.rfind("btime ", 0) == 0) {
      boot_time = std::strtod(line.c_str() + 6, nullptr);
      break;
    }
  }
  const double ticks = ProcSelfStatField(ProcSelfStatFields(), 22);
  return boot_time + ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

void Counter::Increment(double v) {
  if (!(v >= 0)) return;  // negative or NaN
  AtomicAdd(&value_, v);
}

void Gauge::Add(double v) { AtomicAdd(&value_, v); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), bucket_counts_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) bucket_counts_[i] = 0;
}

void Histogram::Observe(double v) {
  // First bound >= v; NaN compares false everywhere and lands in +Inf.
  const size_t bucket = std::isnan(v)
                            ? upper_bounds_.size()
                            : static_cast<size_t>(std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) -
                                                  upper_bounds_.begin());
  AtomicAdd(&sum_, v);
  bucket_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::TakeSnapshot() const {
  Snapshot snapshot;
  snapshot.upper_bounds = upper_bounds_;
  snapshot.cumulative_counts.resize(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += bucket_counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts[i] = running;
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    Die(absl::StrCat("ExponentialBuckets(", start, ", ", factor, ", ", count,
                     "): need start > 0, factor > 1, count >= 1"));
  }
  std::vector<double> buckets;
  buckets.reserve(count);
  double bound = start;
  for (int i = 0; i < count; ++i) {
    buckets.push_back(bound);
    bound *= factor;
  }
  return buckets;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  if (!(width > 0) || count < 1) {
    Die(absl::StrCat("LinearBuckets(", start, ", ", width, ", ", count, "): need width > 0, count >= 1"));
  }
  std::vector<double> buckets;
  buckets.reserve(count);
  for (int i = 0; i < count; ++i) buckets.push_back(start + i * width);
  return buckets;
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Integral values (counts, bytes) read best without an exponent; 2^53 is
  // where doubles stop holding every integer.
  if (v == std::floor(v) && std::fabs(v) <= 9007199254740992.0) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  char buf[64];
  const std::to_chars_result result = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, result.ptr);
}

namespace metrics_internal {

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void Die(const std::string& message) {
  std::fprintf(stderr, "skillpack metrics: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

void AppendSample(const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const std::string& extra_label, double value,
                  std::string* out) {
  out->append(name);
  if (!label_names.empty() || !extra_label.empty()) {
    out->push_back('{');
    for (size_t i = 0; i < label_names.size(); ++i) {
      if (i > 0) out->push_back(',');
      absl::StrAppend(out, label_names[i], "=\"", EscapeLabelValue(label_values[i]), "\"");
    }
    if (!extra_label.empty()) {
      if (!label_names.empty()) out->push_back(',');
      out->append(extra_label);
    }
    out->push_back('}');
  }
  absl::StrAppend(out, " ", FormatMetricValue(value), "\n");
}

void AppendSeries(const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Counter& metric, std::string* out) {
  AppendSample(name, label_names, label_values, "", metric.value(), out);
}

void AppendSeries(const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Gauge& metric, std::string* out) {
  AppendSample(name, label_names, label_values, "", metric.value(), out);
}

void AppendSeries(const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& label_values, const Histogram& metric, std::string* out) {
  const Histogram::Snapshot snapshot = metric.TakeSnapshot();
  const std::string bucket_name = name + "_bucket";
  for (size_t i = 0; i <= snapshot.upper_bounds.size(); ++i) {
    const double bound = i < snapshot.upper_bounds.size() ? snapshot.upper_bounds[i] : HUGE_VAL;
    AppendSample(bucket_name, label_names, label_values, absl::StrCat("le=\"", FormatMetricValue(bound), "\""),
                 static_cast<double>(snapshot.cumulative_counts[i]), out);
  }
  AppendSample(name + "_sum", label_names, label_values, "", snapshot.sum, out);
  AppendSample(name + "_count", label_names, label_values, "", static_cast<double>(snapshot.count), out);
}

void CallbackFamily::AppendSamples(std::string* out) const { AppendSample(name(), {}, {}, "", read_(), out); }

}  // namespace metrics_internal

FamilyBase* MetricsRegistry::Register(std::unique_ptr<FamilyBase> family, bool may_reuse) {
  ValidateNames(family->type(), family->name(), family->label_names());
  absl::MutexLock lock(&mu_);
  auto existing = families_.find(family->name());
  if (existing != families_.end()) {
    const FamilyBase& old = *existing->second;
    if (may_reuse && old.type() == family->type() && old.help() == family->help() &&
        old.label_names() == family->label_names() && old.buckets() == family->buckets() &&
        dynamic_cast<const metrics_internal::CallbackFamily*>(&old) == nullptr) {
      return existing->second.get();
    }
    Die(absl::StrCat("metric ", family->name(),
                     " registered twice with a different type, help, labels "
                     "or buckets (or as a callback)"));
  }
  const std::vector<std::string> samples = SampleNames(*family);
  for (const std::string& sample : samples) {
    auto clash = sample_names_.find(sample);
    if (clash != sample_names_.end()) {
      Die(absl::StrCat("metric ", family->name(), " emits sample ", sample, ", which metric ", clash->second,
                       " already emits"));
    }
  }
  for (const std::string& sample : samples) {
    sample_names_[sample] = family->name();
  }
  FamilyBase* stored = family.get();
  families_[family->name()] = std::move(family);
  return stored;
}

Family<Counter>& MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                             std::vector<std::string> label_names) {
  auto family = std::make_unique<Family<Counter>>(name, help, std::move(label_names), std::vector<double>{},
                                                  [] { return std::make_unique<Counter>(); });
  return *static_cast<Family<Counter>*>(Register(std::move(family), true));
}

Family<Gauge>& MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                         std::vector<std::string> label_names) {
  auto family = std::make_unique<Family<Gauge>>(name, help, std::move(label_names), std::vector<double>{},
                                                [] { return std::make_unique<Gauge>(); });
  return *static_cast<Family<Gauge>*>(Register(std::move(family), true));
}

Family<Histogram>& MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                                 std::vector<double> buckets, std::vector<std::string> label_names) {
  std::vector<double> bounds = ValidateBuckets(name, std::move(buckets));
  auto family = std::make_unique<Family<Histogram>>(name, help, std::move(label_names), bounds,
                                                    [bounds] { return std::make_unique<Histogram>(bounds); });
  return *static_cast<Family<Histogram>*>(Register(std::move(family), true));
}

void MetricsRegistry::AddCounterCallback(const std::string& name, const std::string& help,
                                         std::function<double()> read) {
  Register(std::make_unique<metrics_internal::CallbackFamily>(name, help, MetricType::kCounter, std::move(read)),
           false);
}

void MetricsRegistry::AddGaugeCallback(const std::string& name, const std::string& help, std::function<double()> read) {
  Register(std::make_unique<metrics_internal::CallbackFamily>(name, help, MetricType::kGauge, std::move(read)), false);
}

std::string MetricsRegistry::Exposition() const {
  std::string out;
  std::string samples;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [name, family] : families_) {
    samples.clear();
    family->AppendSamples(&samples);
    // A labelled family with no series yet is left out: the text format has
    // no way to say "no samples" and Go's encoder refuses such families.
    if (samples.empty()) continue;
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(family->help()), "\n# TYPE ", name, " ",
                    metrics_internal::MetricTypeName(family->type()), "\n", samples);
  }
  return out;
}

void RegisterProcessMetrics(MetricsRegistry* registry) {
  registry->AddGaugeCallback("process_resident_memory_bytes", "Resident memory size in bytes.",
                             [] { return StatmBytes(1); });
  registry->AddGaugeCallback("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                             [] { return StatmBytes(0); });
  registry->AddCounterCallback("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", [] {
    const std::vector<std::string> fields = ProcSelfStatFields();
    return (ProcSelfStatField(fields, 14) + ProcSelfStatField(fields, 15)) / static_cast<double>(sysconf(_SC_CLK_TCK));
  });
  registry->AddGaugeCallback("process_open_fds", "Number of open file descriptors.", OpenFds);
  const double start_time = ProcessStartTimeSeconds();
  registry->AddGaugeCallback("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                             [start_time] { return start_time; });
}

}  // namespace skillpack
