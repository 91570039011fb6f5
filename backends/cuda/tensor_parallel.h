// Tensor parallelism of the CUDA backend (docs/CUDA.md "Tensor parallelism"): one process
// per GPU, Megatron-style shards, one NCCL communicator per decoder.
//
// A rank holds a slice of every layer: query heads [r * heads / n, (r + 1) * heads / n)
// and their KV heads (KV heads must divide by n; the query heads of a KV group stay
// together), the rows of gate/up and the input columns of o_proj and down_proj that match.
// Embeddings, norms and lm_head are replicated. The decoder computes with the shard's
// geometry (ShardConfig) and sums the residual stream over the ranks after o_proj and
// after down_proj (AllReduceSum, float32).
#ifndef APRUNTIME_BACKENDS_CUDA_TENSOR_PARALLEL_H_
#define APRUNTIME_BACKENDS_CUDA_TENSOR_PARALLEL_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/model_config.h"

struct ncclComm;

namespace apr::cuda {

// Bytes of an ncclUniqueId.
constexpr int kNcclUniqueIdBytes = 128;

struct TensorParallelOptions {
  int rank = 0;  // in [0, size)
  int size = 1;  // 1: no tensor parallelism
  // The 128 bytes of rank 0's CreateNcclUniqueId(); empty when size is 1.
  std::string nccl_unique_id;
};

// NVLink multicast (NVLS) stays off in every process of this project: sets
// NCCL_NVLS_ENABLE=0 unless the environment already sets it (a different value is kept
// and reported on stderr). Also NCCL_RUNTIME_CONNECT=0 (peers connected at init, not in
// a graph capture) and NCCL_GRAPH_REGISTER=0, unless set. Called before any NCCL call of
// this process.
void DisableNvlinkMulticast();

// Rank 0's half of forming a group: ncclGetUniqueId starts NCCL's bootstrap listener in
// this process and returns its 128-byte id, which every rank then passes to its decoder
// (TensorParallelOptions::nccl_unique_id). This process must be rank 0 of that group.
absl::StatusOr<std::string> CreateNcclUniqueId();

// Checks that `config` splits over `size` ranks: KV heads (and so query heads) and the
// MLP's intermediate size divide by it.
absl::Status CheckShardable(const ModelConfig& config, int size);

// The geometry one rank computes with: query heads, KV heads and intermediate size
// divided by `size`; everything else (hidden, vocab, layers, context, RoPE) unchanged.
ModelConfig ShardConfig(const ModelConfig& config, int size);

// One rank's NCCL communicator.
class TensorParallel {
 public:
  // Joins the group (ncclCommInitRank on `device`, which must be current); returns once
  // every rank has joined. Blocks indefinitely if a rank never joins (the caller's RPC
  // deadline is the limit).
  static absl::StatusOr<std::unique_ptr<TensorParallel>> Create(const TensorParallelOptions& o,
                                                                int device);
  ~TensorParallel();
  TensorParallel(const TensorParallel&) = delete;
  TensorParallel& operator=(const TensorParallel&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // x[0, count) = the sum over the ranks of their x, in place, float32, queued on
  // `stream` (capturable into a CUDA graph). Every rank gets bitwise the same result.
  absl::Status AllReduceSum(float* x, int64_t count, cudaStream_t stream);

 private:
  TensorParallel(ncclComm* comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  ncclComm* comm_;
  int rank_, size_;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_TENSOR_PARALLEL_H_
