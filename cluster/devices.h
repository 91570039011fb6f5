// Opens a model on a device named in a config ("cpu", "cuda:N", "auto"): the CPU
// reference (backends/cpu) or the CUDA backend (backends/cuda). Every worker binary links
// both; "auto" is cuda:0 when the machine has a GPU (cudaGetDeviceCount at run time) and
// cpu otherwise, so one binary serves CPU-only and GPU machines.
#ifndef APRUNTIME_CLUSTER_DEVICES_H_
#define APRUNTIME_CLUSTER_DEVICES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/security.h"
#include "runtime/decoder.h"
#include "runtime/kv_placement.h"
#include "runtime/model_config.h"

namespace apr::cuda {
struct CudaDecoderOptions;
}  // namespace apr::cuda

namespace apr::cluster {

// Where a worker keeps the KV cache (cluster config kv_cache.placement): the runtime's one
// enum (runtime/kv_placement.h).
using ::apr::KvPlacement;

struct DecoderOptions {
  // Live sequences at once (the largest decode batch); 0: 8.
  int max_sequences = 8;
  // Tokens per sequence; 0: the model's max_position_embeddings (CUDA: its KV pool is
  // sized for max_sequences x max_context).
  int64_t max_context = 0;
  // Tensor parallelism: rank, world size and rank 0's NCCL unique id (CUDA only).
  int tp_rank = 0;
  int tp_size = 1;
  std::string nccl_unique_id;
  KvPlacement placement = KvPlacement::kDevice;
  // Tokens each decode step attends to per KV head; 0: 1024. CUDA: used when the model
  // folder has predictor.safetensors (block-sparse attention), else attention is dense.
  // The CPU worker attends densely.
  int budget_tokens = 0;
  // host:port of the storage nodes (kRemote), and how to reach a secured one (the
  // worker's --kv_tls_* and --kv_auth_token_file).
  std::vector<std::string> storage_nodes;
  // 2: two copies over the two halves of storage_nodes (docs/KVSTORE.md "Replication").
  int storage_replication = 1;
  kvstore::TlsFiles storage_tls;
  std::string storage_auth_token_file;
  // Block-sparse decode attention (CUDA). kAuto, the worker's: on when the model folder
  // has the predictor's weights. kOff: dense. kOn: on, an error without the weights
  // (generate's --attention names the choice).
  enum class Sparse { kAuto, kOff, kOn };
  Sparse sparse = Sparse::kAuto;
  // The predictor's weights; empty: <model_dir>/predictor.safetensors.
  std::string predictor_path;
  // Calibration rows from the exact full attention row (resident cache only) instead of
  // the key summaries the worker uses for every placement: generate's --attention
  // predictor, the CPU policy of that name.
  bool full_row_calibration = false;
  // Every n-th decode step calibrates (0: never); -1: kDefaultCalibrationStep.
  int calibration_step = -1;
  // predictor-hybrid (CUDA SparseOptions::hybrid): a quarter of the predicted blocks chosen
  // at the step by the current query's Quest bound. Resident or HOST placement; REMOTE is
  // refused at load.
  bool hybrid = false;
  // The first n layers attend densely (the reference's skip_2layer is 2); offloaded, their
  // whole KV stays in GPU memory (counted in the memory plan).
  int dense_layers = 0;
};

// Sets `o`'s KV placement from `options`: device memory (resident), the worker host's
// pinned RAM (offload-local) or a storage node (offload-remote: rank r of a group uses
// node r modulo their number; the node's UCX transports unless UCX_TLS is set). Offload needs `o`
// to have sparse attention on (the model's predictor). Host code; does not touch a GPU.
absl::Status ApplyKvPlacement(const DecoderOptions& options, cuda::CudaDecoderOptions* o);

// kv_cache placement AUTO on a GPU with `free_bytes` free: kDevice when the whole KV
// cache of max_sequences x max_context fits beside the weights, else kHost (needs the
// predictor). The error names the sizes (backends/cuda/memory_estimate.h). Host code.
absl::StatusOr<KvPlacement> ResolveAutoPlacement(const ModelConfig& model,
                                                 const DecoderOptions& options, int64_t free_bytes,
                                                 bool has_predictor,
                                                 const std::string& predictor_path);

// Number of CUDA devices this process sees (0 without a GPU or driver).
int CudaDeviceCount();

// The device "auto" stands for on this machine: "cuda:0" with a GPU, else "cpu".
std::string ResolveDevice(const std::string& device);

// Loads the model folder onto `device` (after ResolveDevice). Under tensor parallelism
// this blocks until every rank of the group has joined.
absl::StatusOr<std::unique_ptr<Decoder>> OpenDecoder(const std::string& device,
                                                     const std::string& model_dir,
                                                     const DecoderOptions& options = {});

// Rank 0's part of forming a tensor-parallel group: a new NCCL unique id (128 bytes).
absl::StatusOr<std::string> CreateNcclUniqueId();

// KV storage-tier counters of a decoder (Prometheus apr_fetch_bytes_total, ...): a CUDA
// decoder's offload_stats(); zero for the CPU decoder and for a resident KV cache.
struct OffloadCounters {
  int64_t fetch_bytes = 0;
  int64_t prefetch_hits = 0;
  int64_t prefetch_stalls = 0;
  // Remote: bytes read from each storage node, by address (empty otherwise).
  std::vector<std::pair<std::string, int64_t>> node_bytes_read;
};
OffloadCounters ReadOffloadCounters(const Decoder& decoder);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_DEVICES_H_
