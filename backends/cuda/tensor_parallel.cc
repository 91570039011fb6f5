#include "backends/cuda/tensor_parallel.h"

#include <nccl.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "backends/cuda/cuda_check.h"

namespace apr::cuda {
namespace {

absl::Status NcclStatus(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(what, ": ", ncclGetErrorString(r), " (", ncclGetLastError(nullptr), ")"));
}

}  // namespace

void DisableNvlinkMulticast() {
  // Connect every peer at init rather than at the first collective, which would otherwise
  // be inside a decode graph's capture; collectives on the decoder's own cudaMalloc
  // buffers go through NCCL's buffers (no user-buffer registration in graphs).
  setenv("NCCL_RUNTIME_CONNECT", "0", 0);
  setenv("NCCL_GRAPH_REGISTER", "0", 0);
  const char* v = getenv("NCCL_NVLS_ENABLE");
  if (v == nullptr) {
    setenv("NCCL_NVLS_ENABLE", "0", 0);
  } else if (std::strcmp(v, "0") != 0) {
    std::fprintf(stderr,
                 "warning: NCCL_NVLS_ENABLE=%s in the environment; this project keeps NVLink "
                 "multicast off (NCCL_NVLS_ENABLE=0)\n",
                 v);
  }
}

absl::StatusOr<std::string> CreateNcclUniqueId() {
  DisableNvlinkMulticast();
  ncclUniqueId id;
  APR_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  static_assert(sizeof(id.internal) == kNcclUniqueIdBytes);
  return std::string(id.internal, sizeof(id.internal));
}

absl::Status CheckShardable(const ModelConfig& c, int size) {
  if (size < 1) return absl::InvalidArgumentError("tensor-parallel size must be at least 1");
  if (c.num_key_value_heads % size != 0 || c.intermediate_size % size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor parallelism over ", size, " ranks needs the KV heads (", c.num_key_value_heads,
        ") and the intermediate size (", c.intermediate_size, ") to divide by ", size));
  }
  return absl::OkStatus();
}

ModelConfig ShardConfig(const ModelConfig& c, int size) {
  ModelConfig s = c;
  s.num_attention_heads = c.num_attention_heads / size;
  s.num_key_value_heads = c.num_key_value_heads / size;
  s.intermediate_size = c.intermediate_size / size;
  return s;
}

absl::StatusOr<std::unique_ptr<TensorParallel>> TensorParallel::Create(
    const TensorParallelOptions& o, int device) {
  if (o.size < 2 || o.rank < 0 || o.rank >= o.size) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor-parallel rank ", o.rank, " of ", o.size, " ranks"));
  }
  if (o.nccl_unique_id.size() != kNcclUniqueIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the NCCL unique id has ",
                                                   o.nccl_unique_id.size(), " bytes; expected ",
                                                   kNcclUniqueIdBytes, " (from rank 0)"));
  }
  DisableNvlinkMulticast();
  APR_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  ncclUniqueId id;
  std::memcpy(id.internal, o.nccl_unique_id.data(), kNcclUniqueIdBytes);
  ncclComm_t comm = nullptr;
  APR_RETURN_IF_ERROR(NcclStatus(
      ncclCommInitRank(&comm, o.size, id, o.rank),
      absl::StrCat("ncclCommInitRank (rank ", o.rank, " of ", o.size, ", cuda:", device, ")")
          .c_str()));
  std::unique_ptr<TensorParallel> tp(new TensorParallel(comm, o.rank, o.size));
  // One eager all-reduce of a small and a large message: every rank's connections and
  // kernels are set up before any graph capture, and a broken link fails here.
  constexpr int64_t kWarm = int64_t{1} << 20;
  float* buf = nullptr;
  cudaStream_t stream = nullptr;
  APR_CUDA_RETURN_IF_ERROR(cudaMalloc(&buf, kWarm * sizeof(float)));
  absl::Status s = CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                              "cudaStreamCreateWithFlags", __FILE__, __LINE__);
  if (s.ok())
    s = CudaStatus(cudaMemsetAsync(buf, 0, kWarm * sizeof(float), stream), "cudaMemsetAsync",
                   __FILE__, __LINE__);
  if (s.ok()) s = tp->AllReduceSum(buf, 1, stream);
  if (s.ok()) s = tp->AllReduceSum(buf, kWarm, stream);
  if (s.ok())
    s = CudaStatus(cudaStreamSynchronize(stream), "cudaStreamSynchronize", __FILE__, __LINE__);
  if (stream != nullptr) cudaStreamDestroy(stream);
  cudaFree(buf);
  if (!s.ok()) return s;
  return tp;
}

TensorParallel::~TensorParallel() {
  // Local teardown that never waits for the other ranks (they may have exited already or
  // be stopping at the same time); the decoder has synchronised its stream before this.
  if (comm_ != nullptr) ncclCommAbort(comm_);
}

absl::Status TensorParallel::AllReduceSum(float* x, int64_t count, cudaStream_t stream) {
  return NcclStatus(
      ncclAllReduce(x, x, static_cast<size_t>(count), ncclFloat32, ncclSum, comm_, stream),
      "ncclAllReduce");
}

}  // namespace apr::cuda
