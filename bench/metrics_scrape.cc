#include "bench/metrics_scrape.h"

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace apr::bench {

Metrics Scrape(int port) {
  Metrics m;
  if (port <= 0) return m;
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(10, 0);
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return m;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    // The value follows the last space (a label value may hold spaces).
    const size_t space = line.rfind(' ');
    double v;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &v)) continue;
    m[std::string(line.substr(0, space))] = v;
  }
  return m;
}

double Delta(const Metrics& before, const Metrics& after, const std::string& name) {
  auto a = after.find(name), b = before.find(name);
  return (a == after.end() ? 0 : a->second) - (b == before.end() ? 0 : b->second);
}

double MeanMs(const Metrics& before, const Metrics& after, const std::string& histogram) {
  const double n = Delta(before, after, histogram + "_count");
  return n > 0 ? 1e3 * Delta(before, after, histogram + "_sum") / n : 0;
}

std::vector<std::pair<std::string, double>> LabelledDeltas(const Metrics& before,
                                                           const Metrics& after,
                                                           const std::string& name) {
  std::vector<std::pair<std::string, double>> out;
  const std::string prefix = name + "{";
  for (const auto& [sample, value] : after) {
    if (!absl::StartsWith(sample, prefix)) continue;
    // name{label="value"}: the value between the first '"' and the last.
    const size_t open = sample.find('"'), close = sample.rfind('"');
    if (open == std::string::npos || close <= open) continue;
    out.emplace_back(sample.substr(open + 1, close - open - 1), Delta(before, after, sample));
  }
  return out;
}

}  // namespace apr::bench
