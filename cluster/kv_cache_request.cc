#include "cluster/kv_cache_request.h"

namespace apr::cluster {

namespace wv1 = ::apr::worker::v1;

wv1::KvCache WorkerKvCache(const ClusterConfig& config) {
  const v1::KvCache& c = config.kv_cache();
  wv1::KvCache kv;
  switch (c.placement()) {
    case v1::KvCache::PLACEMENT_HOST:
      kv.set_placement(wv1::KvCache::PLACEMENT_HOST);
      break;
    case v1::KvCache::PLACEMENT_REMOTE:
      kv.set_placement(wv1::KvCache::PLACEMENT_REMOTE);
      break;
    case v1::KvCache::PLACEMENT_AUTO:
      kv.set_placement(wv1::KvCache::PLACEMENT_AUTO);
      break;
    default:
      kv.set_placement(wv1::KvCache::PLACEMENT_DEVICE);
  }
  kv.set_budget_tokens(c.budget_tokens());
  kv.set_replication(c.replication());
  kv.set_hybrid(c.selection() == v1::KvCache::SELECTION_PREDICTOR_HYBRID);
  kv.set_dense_layers(c.dense_layers());
  return kv;
}

void ApplyKvCacheRequest(const wv1::KvCache& kv, DecoderOptions* options) {
  switch (kv.placement()) {
    case wv1::KvCache::PLACEMENT_HOST:
      options->placement = KvPlacement::kHost;
      break;
    case wv1::KvCache::PLACEMENT_REMOTE:
      options->placement = KvPlacement::kRemote;
      break;
    case wv1::KvCache::PLACEMENT_AUTO:
      options->placement = KvPlacement::kAuto;
      break;
    default:
      options->placement = KvPlacement::kDevice;
  }
  options->budget_tokens = kv.budget_tokens();
  options->storage_nodes.assign(kv.storage_nodes().begin(), kv.storage_nodes().end());
  options->storage_replication = kv.replication();
  options->hybrid = kv.hybrid();
  options->dense_layers = kv.dense_layers();
}

}  // namespace apr::cluster
