// The cluster config's kv_cache section on its way to a worker: the front end turns it
// into LoadModelRequest.kv_cache, the worker turns that into its DecoderOptions. Both
// halves here, so one test follows every field from the config to the decoder's options.
#ifndef APRUNTIME_CLUSTER_KV_CACHE_REQUEST_H_
#define APRUNTIME_CLUSTER_KV_CACHE_REQUEST_H_

#include "cluster/config.h"
#include "cluster/devices.h"
#include "rpc/worker/v1/worker.pb.h"

namespace apr::cluster {

// Placement, budget, replication, selection and dense layers (the storage nodes are added
// per worker group by the caller).
::apr::worker::v1::KvCache WorkerKvCache(const ClusterConfig& config);

// The worker's side: `kv` into `options` (placement, budget, nodes, replication, hybrid,
// dense layers).
void ApplyKvCacheRequest(const ::apr::worker::v1::KvCache& kv, DecoderOptions* options);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_KV_CACHE_REQUEST_H_
