// Where a decoder keeps the KV cache: the one C++ enum for it (the cluster config's
// kv_cache.placement and the Worker API's KvCache.placement are its wire forms;
// cluster/devices.cc maps them). docs/CLUSTER.md "KV placement".
#ifndef APRUNTIME_RUNTIME_KV_PLACEMENT_H_
#define APRUNTIME_RUNTIME_KV_PLACEMENT_H_

namespace apr {

enum class KvPlacement {
  kDevice,  // the decoder's own memory: the CPU backend's cache, or GPU memory (resident)
  kHost,    // pinned host RAM of the worker's host (a kvstore/ block pool), the GPU a cache
  kRemote,  // storage nodes over UCX, the GPU a cache
  kAuto,    // a worker's choice: kDevice when the sequences x context fit the GPU, else
            // kHost (cluster/devices.cc); decoders take only the other three
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_KV_PLACEMENT_H_
