#include "cluster/metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace apr::cluster {
namespace {

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return absl::StrFormat("%.15g", v);
}

// A label value as the text format wants it: backslash, double quote and newline escaped.
std::string EscapeLabel(const std::string& v) {
  return absl::StrReplaceAll(v, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  absl::MutexLock l(&mu_);
  ++counts_[i];
  sum_ += v;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  absl::MutexLock l(&mu_);
  uint64_t total = 0;
  for (uint64_t c : counts_) s.cumulative.push_back(total += c);
  s.sum = sum_;
  s.count = total;
  return s;
}

Counter* MetricsRegistry::AddCounter(const std::string& name, const std::string& help) {
  auto f = std::make_unique<Family>(Family{name, help, "counter"});
  f->counter = std::make_unique<Counter>();
  Counter* c = f->counter.get();
  absl::MutexLock l(&mu_);
  families_.push_back(std::move(f));
  return c;
}

Gauge* MetricsRegistry::AddGauge(const std::string& name, const std::string& help) {
  auto f = std::make_unique<Family>(Family{name, help, "gauge"});
  f->gauge = std::make_unique<Gauge>();
  Gauge* g = f->gauge.get();
  absl::MutexLock l(&mu_);
  families_.push_back(std::move(f));
  return g;
}

void MetricsRegistry::AddGaugeFunction(const std::string& name, const std::string& help,
                                       std::function<double()> read) {
  auto f = std::make_unique<Family>(Family{name, help, "gauge"});
  f->read = std::move(read);
  absl::MutexLock l(&mu_);
  families_.push_back(std::move(f));
}

void MetricsRegistry::AddLabelledGaugeFunction(const std::string& name, const std::string& help,
                                               const std::string& label,
                                               std::function<LabelledValues()> read) {
  auto f = std::make_unique<Family>(Family{name, help, "gauge"});
  f->label = label;
  f->read_labelled = std::move(read);
  absl::MutexLock l(&mu_);
  families_.push_back(std::move(f));
}

Histogram* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> bounds) {
  auto f = std::make_unique<Family>(Family{name, help, "histogram"});
  f->histogram = std::make_unique<Histogram>(std::move(bounds));
  Histogram* h = f->histogram.get();
  absl::MutexLock l(&mu_);
  families_.push_back(std::move(f));
  return h;
}

std::string MetricsRegistry::Render() const {
  std::string out;
  absl::MutexLock l(&mu_);
  for (const auto& f : families_) {
    absl::StrAppend(&out, "# HELP ", f->name, " ", f->help, "\n# TYPE ", f->name, " ", f->type,
                    "\n");
    if (f->counter) {
      absl::StrAppend(&out, f->name, " ", Number(f->counter->value()), "\n");
    } else if (f->gauge) {
      absl::StrAppend(&out, f->name, " ", Number(f->gauge->value()), "\n");
    } else if (f->read) {
      absl::StrAppend(&out, f->name, " ", Number(f->read()), "\n");
    } else if (f->read_labelled) {
      for (const auto& [value, v] : f->read_labelled()) {
        absl::StrAppend(&out, f->name, "{", f->label, "=\"", EscapeLabel(value), "\"} ", Number(v),
                        "\n");
      }
    } else if (f->histogram) {
      const Histogram::Snapshot s = f->histogram->snapshot();
      for (size_t i = 0; i <= s.bounds.size(); ++i) {
        const double le = i < s.bounds.size() ? s.bounds[i] : INFINITY;
        absl::StrAppend(&out, f->name, "_bucket{le=\"", Number(le), "\"} ", s.cumulative[i], "\n");
      }
      absl::StrAppend(&out, f->name, "_sum ", Number(s.sum), "\n", f->name, "_count ", s.count,
                      "\n");
    }
  }
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i, start *= factor) b.push_back(start);
  return b;
}

}  // namespace apr::cluster
