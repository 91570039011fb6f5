// Scrape reads a real /metrics endpoint on loopback (cluster/metrics_http.h); the deltas
// between two scrapes, a histogram's mean and the per-label deltas come out as computed by
// hand from the values set in between.
#include "bench/metrics_scrape.h"

#include <atomic>

#include "cluster/metrics.h"
#include "cluster/metrics_http.h"
#include "gtest/gtest.h"

namespace apr::bench {
namespace {

using ::apr::cluster::MetricsHttpServer;
using ::apr::cluster::MetricsRegistry;

TEST(MetricsScrapeTest, DeltasBetweenTwoScrapes) {
  MetricsRegistry r;
  auto* steps = r.AddCounter("apr_worker_steps_total", "Steps.");
  auto* h = r.AddHistogram("apr_decode_step_seconds", "Step time.", {0.01, 0.1});
  std::atomic<double> node_a{1000}, node_b{0};
  r.AddLabelledGaugeFunction("apr_storage_node_fetch_bytes_total", "Bytes per node.", "node",
                             [&] {
                               return MetricsRegistry::LabelledValues{{"127.0.0.1:9100", node_a},
                                                                      {"127.0.0.1:9101", node_b}};
                             });
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, &r);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();

  steps->Add(2);
  h->Observe(0.004);
  const Metrics before = Scrape(port);
  ASSERT_FALSE(before.empty());
  EXPECT_EQ(before.at("apr_worker_steps_total"), 2);
  EXPECT_EQ(before.at("apr_storage_node_fetch_bytes_total{node=\"127.0.0.1:9100\"}"), 1000);

  steps->Add(3);
  h->Observe(0.006);
  h->Observe(0.008);
  node_a = 5000;
  node_b = 3000;
  const Metrics after = Scrape(port);
  EXPECT_EQ(Delta(before, after, "apr_worker_steps_total"), 3);
  EXPECT_EQ(Delta(before, after, "apr_not_there"), 0);
  // (0.006 + 0.008) / 2 s, in ms.
  EXPECT_NEAR(MeanMs(before, after, "apr_decode_step_seconds"), 7.0, 1e-9);
  const auto nodes = LabelledDeltas(before, after, "apr_storage_node_fetch_bytes_total");
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].first, "127.0.0.1:9100");
  EXPECT_EQ(nodes[0].second, 4000);
  EXPECT_EQ(nodes[1].first, "127.0.0.1:9101");
  EXPECT_EQ(nodes[1].second, 3000);
}

TEST(MetricsScrapeTest, NoEndpointGivesNothing) {
  EXPECT_TRUE(Scrape(0).empty());
  EXPECT_TRUE(LabelledDeltas({}, {}, "apr_storage_node_fetch_bytes_total").empty());
}

}  // namespace
}  // namespace apr::bench
