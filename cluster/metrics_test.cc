#include "cluster/metrics.h"

#include <httplib.h>

#include "cluster/metrics_http.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::cluster {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, RendersTheTextFormat) {
  MetricsRegistry r;
  r.AddCounter("apr_tokens_generated_total", "Tokens sampled.")->Add(3);
  r.AddGauge("apr_queue_depth", "Requests waiting.")->Set(2);
  r.AddGaugeFunction("apr_running_sequences", "Sequences running.", [] { return 5.0; });
  Histogram* h = r.AddHistogram("apr_decode_step_seconds", "Step time.", {0.01, 0.1});
  h->Observe(0.005);
  h->Observe(0.05);
  h->Observe(1);
  EXPECT_EQ(r.Render(),
            "# HELP apr_tokens_generated_total Tokens sampled.\n"
            "# TYPE apr_tokens_generated_total counter\n"
            "apr_tokens_generated_total 3\n"
            "# HELP apr_queue_depth Requests waiting.\n"
            "# TYPE apr_queue_depth gauge\n"
            "apr_queue_depth 2\n"
            "# HELP apr_running_sequences Sequences running.\n"
            "# TYPE apr_running_sequences gauge\n"
            "apr_running_sequences 5\n"
            "# HELP apr_decode_step_seconds Step time.\n"
            "# TYPE apr_decode_step_seconds histogram\n"
            "apr_decode_step_seconds_bucket{le=\"0.01\"} 1\n"
            "apr_decode_step_seconds_bucket{le=\"0.1\"} 2\n"
            "apr_decode_step_seconds_bucket{le=\"+Inf\"} 3\n"
            "apr_decode_step_seconds_sum 1.055\n"
            "apr_decode_step_seconds_count 3\n");
}

// One sample per label value, in the order read; quotes, backslashes and newlines escaped;
// no samples when there is nothing to report.
TEST(MetricsTest, LabelledGaugesRenderOneSamplePerValue) {
  MetricsRegistry r;
  r.AddLabelledGaugeFunction("apr_storage_node_fetch_bytes_total", "Bytes per node.", "node", [] {
    return MetricsRegistry::LabelledValues{{"127.0.0.1:9100", 2048}, {"a\"b\\c\nd", 1}};
  });
  r.AddLabelledGaugeFunction("apr_empty", "Nothing.", "node",
                             [] { return MetricsRegistry::LabelledValues{}; });
  EXPECT_EQ(r.Render(),
            "# HELP apr_storage_node_fetch_bytes_total Bytes per node.\n"
            "# TYPE apr_storage_node_fetch_bytes_total gauge\n"
            "apr_storage_node_fetch_bytes_total{node=\"127.0.0.1:9100\"} 2048\n"
            "apr_storage_node_fetch_bytes_total{node=\"a\\\"b\\\\c\\nd\"} 1\n"
            "# HELP apr_empty Nothing.\n"
            "# TYPE apr_empty gauge\n");
}

TEST(MetricsTest, ServesOverHttpOnLoopback) {
  MetricsRegistry r;
  r.AddCounter("apr_x_total", "x")->Add(7);
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, &r);
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("apr_x_total 7\n"));
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/plain; version=0.0.4"));
  EXPECT_EQ(client.Get("/nothing")->status, 404);
}

}  // namespace
}  // namespace apr::cluster
