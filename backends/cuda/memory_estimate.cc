#include "backends/cuda/memory_estimate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/block_rules.h"

namespace apr::cuda {
namespace {

constexpr int64_t kBf16 = 2, kF32 = 4;

int64_t WeightBytes(const ModelConfig& c, int tp) {
  const int64_t H = c.hidden_size, hd = c.head_dim, V = c.vocab_size;
  const int64_t nh = c.num_attention_heads / tp, nkv = c.num_key_value_heads / tp;
  const int64_t I = c.intermediate_size / tp;
  const int64_t per_layer = H * (nh + 2 * nkv) * hd + nh * hd * H + 3 * H * I + 2 * H;
  const int64_t embeddings = V * H * (c.tie_word_embeddings ? 1 : 2) + H;
  return kBf16 * (c.num_hidden_layers * per_layer + embeddings);
}

}  // namespace

int64_t GpuMemoryEstimate::ResidentTotal() const {
  return weights + resident_kv + predictor_state + kGpuReserveBytes;
}

int64_t GpuMemoryEstimate::OffloadTotal() const {
  return weights + offload_cache + offload_dense_kv + offload_staging + predictor_state +
         kGpuReserveBytes;
}

GpuMemoryEstimate EstimateGpuMemory(const ModelConfig& c, const MemoryShape& s) {
  const int tp = std::max(1, s.tp_size);
  const int64_t context = s.max_context > 0
                              ? std::min<int64_t>(s.max_context, c.max_position_embeddings)
                              : c.max_position_embeddings;
  const int64_t blocks = NumBlocks(static_cast<int>(context));
  const int64_t L = c.num_hidden_layers, nkv = c.num_key_value_heads / tp;
  const int64_t images = int64_t{s.max_sequences} * L * nkv;          // (sequence, layer, KV head)
  const int64_t block_bytes = kBf16 * 2 * kBlockTokens * c.head_dim;  // K and V
  GpuMemoryEstimate e;
  e.weights = WeightBytes(c, tp);
  e.resident_kv = images * blocks * block_bytes;
  e.host_kv = e.resident_kv;
  const int64_t slots = MaxListLength(PredictedBlocks(s.budget_tokens)) + s.extra_cache_slots;
  const int64_t query_slots = s.hybrid ? HybridQueryBlocks(PredictedBlocks(s.budget_tokens)) : 0;
  e.offload_cache = images * (std::min(blocks, slots) + query_slots) * block_bytes;
  const int64_t dense = std::clamp<int64_t>(s.dense_layers, 0, L);
  e.offload_dense_kv = e.resident_kv / L * dense;
  e.offload_staging = L * nkv * blocks * block_bytes;
  if (s.sparse) {
    // History ring and the CNN's kept R rows (float, kHistoryRing rows each), the CNN's
    // column sums and each block's pooled maximum per query head.
    const int64_t group = c.num_attention_heads / c.num_key_value_heads;
    e.predictor_state = kF32 * images * blocks * (2 * kHistoryRing + 1) +
                        kF32 * int64_t{s.max_sequences} * nkv * blocks * group;
  }
  return e;
}

std::string GiB(int64_t bytes) {
  if (bytes < (int64_t{1} << 30)) {
    return absl::StrFormat("%.0f MiB", static_cast<double>(bytes) / (int64_t{1} << 20));
  }
  return absl::StrFormat("%.1f GiB", static_cast<double>(bytes) / (int64_t{1} << 30));
}

namespace {

std::string Parts(const GpuMemoryEstimate& e, bool offloaded) {
  return absl::StrCat(
      "weights ", GiB(e.weights), " + ", offloaded ? "GPU block cache " : "KV cache ",
      GiB(offloaded ? e.offload_cache : e.resident_kv),
      offloaded && e.offload_dense_kv > 0
          ? absl::StrCat(" + dense layers' KV ", GiB(e.offload_dense_kv))
          : "",
      offloaded ? absl::StrCat(" + prompt staging ", GiB(e.offload_staging)) : "",
      e.predictor_state > 0 ? absl::StrCat(" + predictor state ", GiB(e.predictor_state)) : "",
      " + reserve ", GiB(kGpuReserveBytes), " = ",
      GiB(offloaded ? e.OffloadTotal() : e.ResidentTotal()));
}

}  // namespace

absl::Status CheckFits(const GpuMemoryEstimate& e, bool offloaded, int64_t free_bytes) {
  const int64_t need = offloaded ? e.OffloadTotal() : e.ResidentTotal();
  if (need <= free_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "does not fit the GPU: ", Parts(e, offloaded), ", and the GPU has ", GiB(free_bytes), " free",
      offloaded ? "; serve fewer sequences or a shorter context"
                : "; serve fewer sequences or a shorter context, or keep the KV cache in "
                  "host RAM (kv_cache placement HOST or AUTO)"));
}

absl::StatusOr<PlacementChoice> ChoosePlacement(const GpuMemoryEstimate& e, int64_t free_bytes,
                                                bool has_predictor,
                                                const std::string& predictor_path) {
  if (e.ResidentTotal() <= free_bytes) return PlacementChoice::kResident;
  if (e.OffloadTotal() > free_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kv_cache placement AUTO: neither placement fits the GPU (", GiB(free_bytes),
                     " free): resident needs ", Parts(e, false),
                     "; the KV cache in host RAM needs ", Parts(e, true)));
  }
  if (!has_predictor) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kv_cache placement AUTO: the KV cache does not fit the GPU (", Parts(e, false), ", ",
        GiB(free_bytes), " free) and cannot move to host RAM without the attention predictor: ",
        predictor_path, " does not exist"));
  }
  return PlacementChoice::kHost;
}

}  // namespace apr::cuda
