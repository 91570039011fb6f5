// A benchmark's view of the cluster's Prometheus endpoints (cluster/metrics.h): samples
// scraped before and after a row, and what the row's figures are made of.
#ifndef APRUNTIME_BENCH_METRICS_SCRAPE_H_
#define APRUNTIME_BENCH_METRICS_SCRAPE_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace apr::bench {

// Sample name (labels included, as rendered: name{node="..."}) -> value.
using Metrics = std::map<std::string, double>;

// The apr_* samples of http://127.0.0.1:port/metrics; empty on failure or port <= 0.
Metrics Scrape(int port);

// after - before of one sample (absent: 0).
double Delta(const Metrics& before, const Metrics& after, const std::string& name);

// Mean of a histogram over the interval, ms; 0 without observations.
double MeanMs(const Metrics& before, const Metrics& after, const std::string& histogram);

// The label values of `name`'s labelled samples and their deltas, in label order:
// apr_storage_node_fetch_bytes_total{node="A"} -> ("A", bytes read from A in between).
std::vector<std::pair<std::string, double>> LabelledDeltas(const Metrics& before,
                                                           const Metrics& after,
                                                           const std::string& name);

}  // namespace apr::bench

#endif  // APRUNTIME_BENCH_METRICS_SCRAPE_H_
