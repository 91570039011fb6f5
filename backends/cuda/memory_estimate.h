// GPU memory a CUDA decoder configuration needs, computed from the model's geometry before
// anything is allocated: the worker picks the KV placement with it (kv_cache placement
// AUTO) and refuses, with the sizes, a configuration that cannot fit. Plain C++ (no CUDA),
// so the rules are tested without a GPU.
#ifndef APRUNTIME_BACKENDS_CUDA_MEMORY_ESTIMATE_H_
#define APRUNTIME_BACKENDS_CUDA_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/algorithm_constants.h"
#include "runtime/model_config.h"

namespace apr::cuda {

struct MemoryShape {
  int max_sequences = 8;
  int max_context = 0;  // tokens per sequence; 0: the model's max_position_embeddings
  int tp_size = 1;      // this rank holds 1 / tp_size of the heads and the MLP
  bool sparse = false;  // the predictor's per-sequence state (history, CNN sums)
  int budget_tokens = kDefaultBudgetTokens;
  int extra_cache_slots = 16;  // OffloadOptions::extra_cache_slots
  // SparseOptions::dense_layers: offloaded, these layers' whole KV stays on the GPU.
  int dense_layers = 0;
  // SparseOptions::hybrid: offloaded, the query's uncached blocks get slots past the cache.
  bool hybrid = false;
};

// Bytes by part. Estimates, not an allocator's account: activations, cuBLAS and CUDA's
// own context are covered by kGpuReserveBytes, not listed.
struct GpuMemoryEstimate {
  int64_t weights = 0;            // bf16 weights of this rank
  int64_t resident_kv = 0;        // the whole KV cache in GPU memory
  int64_t offload_cache = 0;      // the GPU block cache of an offloaded KV cache
  int64_t offload_dense_kv = 0;   // offloaded: the dense layers' whole KV, resident
  // Offloaded: one prompt's whole KV on the GPU while it is admitted (the staging pool
  // prefill writes before the tier; freed when the prompt ends, so one at a time).
  int64_t offload_staging = 0;
  int64_t predictor_state = 0;    // attention history and CNN state (sparse only)
  int64_t host_kv = 0;            // the KV cache in the storage tier (offloaded)
  int64_t ResidentTotal() const;  // weights + resident KV + predictor state + reserve
  // weights + block cache + dense layers' KV + prompt staging + predictor state + reserve
  int64_t OffloadTotal() const;
};

// Activations, cuBLAS workspace, graphs and the CUDA context: measured well under this on
// the H100 for the shapes of docs/PERFORMANCE.md.
inline constexpr int64_t kGpuReserveBytes = int64_t{2} << 30;

GpuMemoryEstimate EstimateGpuMemory(const ModelConfig& config, const MemoryShape& shape);

// "12.3 GiB", or "25 MiB" under 1 GiB: for messages.
std::string GiB(int64_t bytes);

enum class PlacementChoice { kResident, kHost };

// PLACEMENT_AUTO: resident when it fits `free_bytes`, else the KV cache in host RAM (which
// needs the predictor). Fails, naming the sizes, when neither fits or when only an
// offloaded cache fits and the model has no predictor (`predictor_path` is named).
absl::StatusOr<PlacementChoice> ChoosePlacement(const GpuMemoryEstimate& estimate,
                                                int64_t free_bytes, bool has_predictor,
                                                const std::string& predictor_path);

// A fixed placement that cannot fit `free_bytes`: the error names each part's size.
absl::Status CheckFits(const GpuMemoryEstimate& estimate, bool offloaded, int64_t free_bytes);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_MEMORY_ESTIMATE_H_
