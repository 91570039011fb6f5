#include "runtime/cuda/tensor_parallel.h"

#include <nccl.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_check.h"

namespace apr::cuda {
namespace {

absl::Status NcclStatus(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(r), " (",
                                          ncclGetLastError(nullptr), ")"));
}

}  // namespace

void DisableNvlinkMulticast() {
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
  APR_RETURN_IF_ERROR(NcclStatus(ncclCommInitRank(&comm, o.size, id, o.rank),
                                 absl::StrCat("ncclCommInitRank (rank ", o.rank, " of ", o.size,
                                              ", cuda:", device, ")")
                                     .c_str()));
  return std::unique_ptr<TensorParallel>(new TensorParallel(comm, o.rank, o.size));
}

TensorParallel::~TensorParallel() {
  if (comm_ != nullptr) ncclCommDestroy(comm_);
}

absl::Status TensorParallel::AllReduceSum(float* x, int64_t count, cudaStream_t stream) {
  return NcclStatus(
      ncclAllReduce(x, x, static_cast<size_t>(count), ncclFloat32, ncclSum, comm_, stream),
      "ncclAllReduce");
}

}  // namespace apr::cuda
