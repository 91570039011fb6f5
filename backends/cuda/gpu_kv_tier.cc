// Connecting the tier of an offloaded placement (gpu_kv_tier.h).
#include "backends/cuda/gpu_kv_tier.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/host_gpu_kv_tier.h"
#include "backends/cuda/remote_gpu_kv_tier.h"
#include "kvstore/client/connect_nodes.h"
#include "kvstore/client/replicated_tier.h"

namespace apr::cuda {
namespace {

absl::Status CheckBlockBytes(const char* whose, int64_t theirs, int64_t ours) {
  if (theirs == ours) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(whose, " blocks are ", theirs, " bytes; this model's are ", ours));
}

absl::StatusOr<std::unique_ptr<GpuKvTier>> ConnectHostTier(const OffloadOptions& o,
                                                           int64_t block_bytes,
                                                           int64_t host_blocks) {
  std::shared_ptr<LocalKvTier> pool = o.local_tier;
  if (pool == nullptr) {
    auto t =
        LocalKvTier::Create(block_bytes, o.host_pool_blocks > 0 ? o.host_pool_blocks : host_blocks);
    if (!t.ok()) return t.status();
    pool = *std::move(t);
  }
  APR_RETURN_IF_ERROR(CheckBlockBytes("the local tier's", pool->store->block_bytes(), block_bytes));
  return std::make_unique<HostGpuKvTier>(std::move(pool));
}

// One node: a RemoteTier; several: sharded by KV head, or replicated (connect_nodes.h).
absl::StatusOr<std::unique_ptr<GpuKvTier>> ConnectRemoteTier(const OffloadOptions& o,
                                                             int64_t block_bytes) {
  std::shared_ptr<kvstore::StagingTier> nodes = o.remote_tier;
  std::unique_ptr<kvstore::CopyRestorer> restorer;
  if (nodes == nullptr) {
    std::vector<std::string> addresses = o.remote_addresses;
    if (!o.remote_address.empty()) addresses.insert(addresses.begin(), o.remote_address);
    if (addresses.empty() || (!o.remote_address.empty() && !o.remote_addresses.empty())) {
      return absl::InvalidArgumentError(
          "offload-remote needs a storage node: remote_address, or remote_addresses for several");
    }
    kvstore::RemoteTierOptions ro;
    ro.ucx.tls = o.ucx_tls;
    ro.ucx.net_devices = o.ucx_net_devices;
    ro.tls = o.tls;
    ro.auth_token_file = o.auth_token_file;
    auto t = kvstore::ConnectStorageNodes(addresses, ro, o.replication);
    if (!t.ok()) return t.status();
    nodes = *std::move(t);
    if (auto two = std::dynamic_pointer_cast<kvstore::ReplicatedTier>(nodes); two != nullptr) {
      restorer = std::make_unique<kvstore::CopyRestorer>(addresses, ro, std::move(two));
    }
  }
  APR_RETURN_IF_ERROR(CheckBlockBytes("the storage node's", nodes->block_bytes(), block_bytes));
  return std::make_unique<RemoteGpuKvTier>(std::move(nodes), o, std::move(restorer));
}

}  // namespace

absl::Status CreateEvents(int n, std::vector<cudaEvent_t>* events) {
  events->resize(n, nullptr);
  for (cudaEvent_t& e : *events)
    APR_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return absl::OkStatus();
}

void DestroyEvents(std::vector<cudaEvent_t>* events) {
  for (cudaEvent_t e : *events)
    if (e != nullptr) cudaEventDestroy(e);
  events->clear();
}

absl::StatusOr<std::unique_ptr<GpuKvTier>> ConnectGpuKvTier(KvPlacement placement,
                                                            const OffloadOptions& options,
                                                            int64_t block_bytes,
                                                            int64_t host_blocks) {
  switch (placement) {
    case KvPlacement::kHost:
      return ConnectHostTier(options, block_bytes, host_blocks);
    case KvPlacement::kRemote:
      return ConnectRemoteTier(options, block_bytes);
    default:
      return absl::InvalidArgumentError("a resident KV cache has no tier");
  }
}

}  // namespace apr::cuda
