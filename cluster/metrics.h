// Prometheus metrics: counters, gauges and histograms, rendered in the text exposition
// format (version 0.0.4) for an HTTP scrape (metrics_http.h).
#ifndef APRUNTIME_CLUSTER_METRICS_H_
#define APRUNTIME_CLUSTER_METRICS_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace apr::cluster {

class Counter {
 public:
  void Add(double v = 1) {
    absl::MutexLock l(&mu_);
    value_ += v;
  }
  double value() const {
    absl::MutexLock l(&mu_);
    return value_;
  }

 private:
  mutable absl::Mutex mu_;
  double value_ = 0;
};

class Gauge {
 public:
  void Set(double v) { value_ = v; }
  double value() const { return value_; }

 private:
  std::atomic<double> value_{0};
};

// Cumulative buckets with the given upper bounds (ascending), plus +Inf, sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  mutable absl::Mutex mu_;
  const std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), last is +Inf
  double sum_ = 0;
};

// Owns the metrics of one process; safe to use from any thread.
class MetricsRegistry {
 public:
  // Names follow Prometheus rules (apr_tokens_generated_total); `help` is one line.
  Counter* AddCounter(const std::string& name, const std::string& help);
  Gauge* AddGauge(const std::string& name, const std::string& help);
  // A gauge read at scrape time.
  void AddGaugeFunction(const std::string& name, const std::string& help,
                        std::function<double()> read);
  Histogram* AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds);
  // Gauges read at scrape time, one sample per (label value, value) pair `read` returns:
  // name{label="value"} v (per storage node, say).
  using LabelledValues = std::vector<std::pair<std::string, double>>;
  void AddLabelledGaugeFunction(const std::string& name, const std::string& help,
                                const std::string& label, std::function<LabelledValues()> read);

  // The text exposition format.
  std::string Render() const;

 private:
  struct Family {
    std::string name, help, type;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::function<double()> read;
    std::string label;
    std::function<LabelledValues()> read_labelled;
    std::unique_ptr<Histogram> histogram;
  };
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
};

// Exponential bucket bounds: start, start*factor, ... (count of them).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_METRICS_H_
