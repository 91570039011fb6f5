// Serves a MetricsRegistry at http://host:port/metrics (Prometheus scrapes it) and a
// plain "ok" at /healthz, on cpp-httplib's threads.
#ifndef APRUNTIME_CLUSTER_METRICS_HTTP_H_
#define APRUNTIME_CLUSTER_METRICS_HTTP_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "cluster/metrics.h"

namespace httplib {
class Server;
}

namespace apr::cluster {

class MetricsHttpServer {
 public:
  // Binds host:port (0 picks a free port) and starts serving. `registry` must outlive it.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                  const MetricsRegistry* registry);
  ~MetricsHttpServer();  // stops serving
  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_METRICS_HTTP_H_
