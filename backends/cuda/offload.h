// KV placement of the CUDA decoder (docs/CUDA.md "KV offload"): the whole cache resident
// in GPU memory, or offloaded to the storage tier (docs/KVSTORE.md) -- pinned host memory
// in this process (local) or a storage node over UCX (remote) -- with the GPU slot pool
// serving as a per-(sequence, layer, KV head) block cache filled by cross-token prefetch.
#ifndef APRUNTIME_BACKENDS_CUDA_OFFLOAD_H_
#define APRUNTIME_BACKENDS_CUDA_OFFLOAD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/block_store.h"
#include "kvstore/client/staging_tier.h"
#include "kvstore/cuda/host_register.h"
#include "kvstore/security.h"
#include "runtime/kv_placement.h"

namespace apr::cuda {

// The CUDA decoder's placements (runtime/kv_placement.h): kDevice, every block in GPU
// memory (the default); kHost, a pinned host pool in this process read by a gather kernel
// (mapped); kRemote, a storage node over UCX into pinned staging, then to the GPU.
using ::apr::KvPlacement;

// A local tier: a block pool in host memory, registered (pinned, mapped) for the GPU.
// Decoders may share one (the benchmark keeps one pool across configurations).
struct LocalKvTier {
  static absl::StatusOr<std::shared_ptr<LocalKvTier>> Create(int64_t block_bytes,
                                                             int64_t capacity_blocks);
  std::unique_ptr<kvstore::BlockStore> store;
  std::unique_ptr<kvstore::MappedHostMemory> mapped;  // the pool as the GPU sees it
  ~LocalKvTier() { mapped.reset(); }                  // unregister before unmapping
};

struct OffloadOptions {
  // GPU block cache slots per (sequence, layer, KV head) beyond the longest block list
  // (sink + predicted + local window): blocks that leave the selection stay cached until
  // their slot is needed, and are not fetched again if they come back before.
  int extra_cache_slots = 16;
  // false: predicted blocks are fetched every step even when cached (the full-offload
  // baseline of the benchmark, with a budget covering the whole context).
  bool reuse_cached_blocks = true;
  // kHost: the tier, or (null) a new one of host_pool_blocks blocks
  // (0: max_sequences * max_context / 16 per layer and KV head).
  std::shared_ptr<LocalKvTier> local_tier;
  int64_t host_pool_blocks = 0;
  // kRemote: a connected client (shared: a RemoteTier, or a ShardedTier over several
  // nodes), or the storage node to connect to ("host:port"), or several, which share every
  // sequence by KV head (docs/KVSTORE.md "Sharding"). One of the two address fields.
  std::shared_ptr<kvstore::StagingTier> remote_tier;
  std::string remote_address;
  std::vector<std::string> remote_addresses;
  // 2: two copies, over the first and the second half of remote_addresses (docs/KVSTORE.md
  // "Replication"); 0 or 1: one.
  int replication = 1;
  std::string ucx_tls = "tcp";
  std::string ucx_net_devices = "lo";
  // A secured node (docs/KVSTORE.md "Security"): this worker's certificate, key and CA, and
  // the node's bearer-token file; empty: plaintext, no token.
  kvstore::TlsFiles tls;
  std::string auth_token_file;
  int remote_chunk_blocks = 256;  // UCX gets per staging chunk
  int remote_staging_chunks = 4;
  // Layers predicted, planned and fetched together: after the attention of the last layer
  // of each group of this many, one predictor launch, one plan launch and the group's
  // fetches (1: per layer, as soon as its attention is done). Larger groups cost fewer,
  // fuller launches on the compute stream and start the first layers' fetches later; the
  // last group's fetch must finish within the step. 8: measured best on the H100
  // (docs/PERFORMANCE.md "Storage tier").
  int predict_group_layers = 8;
  // Predict each layer group on the side stream, overlapping the next groups' layers. Off,
  // as the shared switch it replaces was (not measured on its own for offloaded steps).
  // Resident steps have their own rule (CudaDecoderOptions::overlap_predictor_max_batch).
  bool predict_on_side_stream = false;
  // CTAs of each fetch (gather) launch; 0: one per SM. They run beside the compute
  // stream's kernels and take SM slots from them; one per SM already saturates the link.
  int fetch_ctas = 0;
  // Testing: the copy stream spins this long before each group's fetches, so that decode
  // steps reach their wait before the fetch is done (stall counting; the result must not
  // change).
  int debug_fetch_delay_us = 0;
};

// Cumulative counters of the offload path (the cluster's apr_fetch_bytes_total,
// apr_prefetch_hits_total, apr_prefetch_stalls_total read these).
struct OffloadStats {
  int64_t decode_steps = 0;
  int64_t blocks_fetched = 0;  // tier -> GPU cache (the first step's fetch included)
  int64_t bytes_fetched = 0;
  int64_t prefetch_hits = 0;     // predicted blocks already in the GPU cache (not fetched)
  int64_t predicted_blocks = 0;  // predicted blocks planned (hits + the predicted fetched)
  int64_t prefetch_waits = 0;    // layer waits of decode steps on their prefetch
  int64_t prefetch_stalls = 0;   // ... that found the prefetch not complete (the step waited)
  int64_t blocks_written = 0;    // GPU -> tier: prefill's blocks and decode write-backs
  int64_t bytes_written = 0;
  // Remote: the host had to wait for a layer's UCX gets before enqueueing its attention.
  int64_t remote_host_stalls = 0;
  double remote_host_stall_seconds = 0;
  // Remote: bytes read from each storage node (its address), in the client's node order
  // (kvstore::TierClient::node_traffic); prefill's reads, if any, included.
  std::vector<std::pair<std::string, int64_t>> node_bytes_read;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_OFFLOAD_H_
