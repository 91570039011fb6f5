#include "cluster/devices.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "backends/cpu/cpu_decoder.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/memory_estimate.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "backends/cuda/tensor_parallel.h"
#include "runtime/algorithm_constants.h"

namespace apr::cluster {
namespace {

const char* PlacementName(KvPlacement p) {
  switch (p) {
    case KvPlacement::kDevice:
      return "PLACEMENT_UNSPECIFIED (device memory)";
    case KvPlacement::kHost:
      return "PLACEMENT_HOST";
    case KvPlacement::kRemote:
      return "PLACEMENT_REMOTE";
    case KvPlacement::kAuto:
      return "PLACEMENT_AUTO";
  }
  return "?";
}

cuda::MemoryShape ShapeOf(const DecoderOptions& options, bool sparse) {
  cuda::MemoryShape shape;
  shape.max_sequences = options.max_sequences;
  shape.max_context = static_cast<int>(options.max_context);
  shape.tp_size = options.tp_size;
  shape.sparse = sparse;
  shape.budget_tokens = options.budget_tokens;
  shape.dense_layers = sparse ? options.dense_layers : 0;
  shape.hybrid = sparse && options.hybrid;
  return shape;
}

// Settles AUTO and checks that the chosen placement fits the GPU's free memory before a
// byte is allocated, so that a configuration too large fails with its sizes.
absl::Status PlanGpuMemory(int index, const std::string& model_dir,
                           const std::string& predictor_path, bool has_predictor,
                           DecoderOptions& options) {
  auto model = LoadModelConfig(model_dir + "/config.json");
  if (!model.ok()) return model.status();
  APR_CUDA_RETURN_IF_ERROR(cudaSetDevice(index));
  size_t free_bytes = 0, total_bytes = 0;
  APR_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  const int64_t free = static_cast<int64_t>(free_bytes);
  if (options.placement == KvPlacement::kAuto) {
    auto p = ResolveAutoPlacement(*model, options, free, has_predictor, predictor_path);
    if (!p.ok()) return p.status();
    options.placement = *p;
    std::fprintf(stderr, "kv_cache placement AUTO: %s\n",
                 *p == KvPlacement::kDevice ? "the KV cache fits the GPU; resident"
                                            : "the KV cache does not fit the GPU; host RAM");
  }
  const auto estimate = cuda::EstimateGpuMemory(*model, ShapeOf(options, has_predictor));
  return cuda::CheckFits(estimate, options.placement != KvPlacement::kDevice, free);
}

// Block-sparse attention as `options` asks (DecoderOptions::sparse), `o` left dense when
// it is off: the budget, where calibration rows come from, and the predictor's weights
// when they are not the model folder's own (CudaDecoder::Load reads those).
absl::Status ApplySparse(const DecoderOptions& options, const std::string& predictor_path,
                         bool has_predictor, cuda::CudaDecoderOptions* o) {
  using Sparse = DecoderOptions::Sparse;
  if (options.sparse == Sparse::kOff || (options.sparse == Sparse::kAuto && !has_predictor)) {
    return absl::OkStatus();
  }
  if (!has_predictor) {
    return absl::FailedPreconditionError(absl::StrCat(
        "block-sparse attention needs the attention predictor's weights: ", predictor_path,
        " does not exist (docs/PREDICTOR.md)"));
  }
  if (!options.predictor_path.empty()) {
    auto weights = cuda::LoadPredictorWeights(predictor_path);
    if (!weights.ok()) return weights.status();
    o->predictor_weights = *std::move(weights);
  }
  o->sparse.enabled = true;
  o->sparse.budget_tokens = options.budget_tokens;
  // The worker takes calibration rows from the per-block key summaries for every
  // placement, resident too: an offloaded cache cannot afford the exact full row, and the
  // placement must not change which blocks are chosen, so a stream gets the same tokens
  // wherever its KV cache lives (docs/CLUSTER.md "KV placement").
  o->sparse.calibration_source = options.full_row_calibration
                                     ? cuda::CalibrationSource::kFullRow
                                     : cuda::CalibrationSource::kKeySummary;
  if (options.calibration_step >= 0) o->sparse.calibration_step = options.calibration_step;
  o->sparse.hybrid = options.hybrid;
  o->sparse.dense_layers = options.dense_layers;
  return absl::OkStatus();
}

absl::Status WithDevice(const std::string& device, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("device ", device, ": ", s.message()));
}

absl::StatusOr<std::unique_ptr<Decoder>> OpenCuda(const std::string& device, int index,
                                                  const std::string& model_dir,
                                                  DecoderOptions options) {
  const int count = CudaDeviceCount();
  if (count == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device, ": no CUDA device on this machine; use cpu or auto"));
  }
  if (index >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device, ": this machine has ", count, " CUDA device(s)"));
  }
  if (options.max_sequences <= 0) options.max_sequences = 8;
  if (options.budget_tokens <= 0) options.budget_tokens = kDefaultBudgetTokens;
  // Block-sparse attention when the model comes with a trained predictor (or the caller
  // asks for it); the whole group loads the same file, so every rank selects with the
  // same weights.
  const std::string predictor_path = options.predictor_path.empty()
                                         ? model_dir + "/predictor.safetensors"
                                         : options.predictor_path;
  const bool has_predictor = std::filesystem::exists(predictor_path);
  if (!has_predictor &&
      (options.placement == KvPlacement::kHost || options.placement == KvPlacement::kRemote)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", device, ": kv_cache placement ", PlacementName(options.placement),
        " keeps only the predicted blocks on the GPU and needs the attention predictor: ",
        predictor_path, " does not exist"));
  }
  cuda::CudaDecoderOptions o;
  o.device = index;
  o.max_sequences = options.max_sequences;
  o.max_context = static_cast<int>(options.max_context);
  o.tp.rank = options.tp_rank;
  o.tp.size = options.tp_size;
  o.tp.nccl_unique_id = options.nccl_unique_id;
  if (absl::Status s = ApplySparse(options, predictor_path, has_predictor, &o); !s.ok()) {
    return WithDevice(device, s);
  }
  if (absl::Status s = PlanGpuMemory(index, model_dir, predictor_path, o.sparse.enabled, options);
      !s.ok()) {
    return WithDevice(device, s);
  }
  if (absl::Status s = ApplyKvPlacement(options, &o); !s.ok()) return WithDevice(device, s);
  auto decoder = cuda::CudaDecoder::Load(model_dir, std::move(o));
  if (!decoder.ok()) return WithDevice(device, decoder.status());
  return std::unique_ptr<Decoder>(std::move(*decoder));
}

}  // namespace

absl::StatusOr<KvPlacement> ResolveAutoPlacement(const ModelConfig& model,
                                                 const DecoderOptions& options, int64_t free_bytes,
                                                 bool has_predictor,
                                                 const std::string& predictor_path) {
  const auto estimate = cuda::EstimateGpuMemory(model, ShapeOf(options, has_predictor));
  auto choice = cuda::ChoosePlacement(estimate, free_bytes, has_predictor, predictor_path);
  if (!choice.ok()) return choice.status();
  return *choice == cuda::PlacementChoice::kResident ? KvPlacement::kDevice : KvPlacement::kHost;
}

absl::Status ApplyKvPlacement(const DecoderOptions& options, cuda::CudaDecoderOptions* o) {
  if (options.placement == KvPlacement::kAuto) {
    return absl::InvalidArgumentError(
        "kv_cache placement PLACEMENT_AUTO must be resolved (ResolveAutoPlacement) first");
  }
  if (options.placement == KvPlacement::kDevice) {
    o->placement = KvPlacement::kDevice;
    return absl::OkStatus();
  }
  if (!o->sparse.enabled) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kv_cache placement ", PlacementName(options.placement),
        ": an offloaded KV cache needs block-sparse attention (only the selected blocks are "
        "on the GPU), and the model folder has no predictor.safetensors (the attention "
        "predictor's weights; docs/PREDICTOR.md)"));
  }
  if (options.placement == KvPlacement::kHost) {
    o->placement = KvPlacement::kHost;  // a pool sized for every sequence
    return absl::OkStatus();
  }
  if (options.storage_nodes.empty()) {
    return absl::InvalidArgumentError(
        "kv_cache placement PLACEMENT_REMOTE: the config names no storage nodes");
  }
  // The front end sends each group its own nodes only, so every rank of a group connects to
  // all of them (several: sharded by KV head, docs/KVSTORE.md "Sharding"); each rank stores
  // only its own KV heads under its own sequence ids (kvstore::NewTierSequenceId).
  o->placement = KvPlacement::kRemote;
  o->offload.remote_address.clear();
  o->offload.remote_addresses = options.storage_nodes;
  o->offload.replication = options.storage_replication;
  // No transport list of its own: RemoteTier::Connect takes the node's (its --ucx_tls, from
  // GetDataPlane) unless UCX_TLS is set here; the node may be on another host.
  o->offload.ucx_tls.clear();
  o->offload.ucx_net_devices.clear();
  o->offload.tls = options.storage_tls;
  o->offload.auth_token_file = options.storage_auth_token_file;
  return absl::OkStatus();
}

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: not an error for "auto"
    return 0;
  }
  return n;
}

std::string ResolveDevice(const std::string& device) {
  if (device == "auto" || device.empty()) return CudaDeviceCount() > 0 ? "cuda:0" : "cpu";
  return device;
}

absl::StatusOr<std::unique_ptr<Decoder>> OpenDecoder(const std::string& device,
                                                     const std::string& model_dir,
                                                     const DecoderOptions& options) {
  const std::string d = ResolveDevice(device);
  if (d == "cpu") {
    if (options.tp_size > 1) {
      return absl::InvalidArgumentError(
          "tensor parallelism needs one GPU per rank (cuda:N); the CPU worker has none");
    }
    if (options.placement != KvPlacement::kDevice && options.placement != KvPlacement::kAuto) {
      return absl::UnimplementedError(
          absl::StrCat("kv_cache placement ", PlacementName(options.placement),
                       ": the CPU worker keeps the KV cache in process; leave "
                       "kv_cache.placement unset"));
    }
    auto decoder = cpu::CpuDecoder::Load(model_dir);
    if (!decoder.ok()) return decoder.status();
    return std::unique_ptr<Decoder>(std::move(*decoder));
  }
  int index = -1;
  if (!absl::StartsWith(d, "cuda:") || !absl::SimpleAtoi(d.substr(5), &index) || index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", d, "\" is not cpu, auto or cuda:N"));
  }
  return OpenCuda(d, index, model_dir, options);
}

absl::StatusOr<std::string> CreateNcclUniqueId() {
  if (CudaDeviceCount() == 0) {
    return absl::FailedPreconditionError(
        "tensor parallelism needs CUDA devices; this machine has none");
  }
  return cuda::CreateNcclUniqueId();
}

OffloadCounters ReadOffloadCounters(const Decoder& decoder) {
  const auto* cuda = dynamic_cast<const cuda::CudaDecoder*>(&decoder);
  if (cuda == nullptr) return {};  // the CPU worker keeps its cache in process
  const cuda::OffloadStats s = cuda->offload_stats();
  return {s.bytes_fetched, s.prefetch_hits, s.prefetch_stalls, s.node_bytes_read};
}

}  // namespace apr::cluster
