#include "backends/cuda/memory_estimate.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model_config.h"
#include "runtime/safetensors.h"

namespace apr::cuda {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;

ModelConfig Llama31_8B() {
  ModelConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 131072;
  return c;
}

// Offloaded with the first 2 layers dense (the reference's skip_2layer): their whole KV
// stays on the GPU, 2 / 32 of the full cache (1 GiB of one 128K sequence's 16 GiB), and
// the "does not fit" message names it.
TEST(MemoryEstimate, DenseLayersOfAnOffloadedCacheAreResident) {
  MemoryShape s;
  s.max_sequences = 1;
  s.dense_layers = 2;
  const GpuMemoryEstimate e = EstimateGpuMemory(Llama31_8B(), s);
  EXPECT_EQ(e.offload_dense_kv, 1 * kGiB);
  EXPECT_EQ(e.OffloadTotal() - e.weights - e.offload_cache - e.offload_staging - kGpuReserveBytes,
            1 * kGiB);
  EXPECT_EQ(e.resident_kv, 16 * kGiB);  // resident: the dense layers are part of it already
  EXPECT_EQ(EstimateGpuMemory(Llama31_8B(), MemoryShape{.max_sequences = 1}).offload_dense_kv, 0);
  const absl::Status st = CheckFits(e, /*offloaded=*/true, 4 * kGiB);
  EXPECT_THAT(st.message(), HasSubstr("dense layers' KV 1.0 GiB"));
  // predictor-hybrid offloaded: 14 query slots per (layer, KV head) past the 81 cached.
  MemoryShape h;
  h.max_sequences = 1;
  h.hybrid = true;
  EXPECT_EQ(EstimateGpuMemory(Llama31_8B(), h).offload_cache, int64_t{256} * (81 + 14) * 8192);
}

// Offloaded, the prompt being admitted has its whole KV in a staging pool on the GPU (16
// GiB for a 128K prompt of Llama-3.1-8B) until it ends; prompts are admitted one at a
// time, so one pool is counted whatever the number of sequences, and the "does not fit"
// message names it. (H100, 6 x 128K offloaded: the plan without it passed at load and the
// fourth whole prompt ran out of GPU memory in prefill.)
TEST(MemoryEstimate, AnOffloadedCacheCountsOnePromptsStaging) {
  MemoryShape s;
  s.max_sequences = 6;
  s.sparse = true;
  const GpuMemoryEstimate e = EstimateGpuMemory(Llama31_8B(), s);
  EXPECT_EQ(e.offload_staging, 16 * kGiB);
  EXPECT_EQ(e.OffloadTotal(), e.weights + e.offload_cache + 16 * kGiB + e.predictor_state +
                                  kGpuReserveBytes);
  s.max_sequences = 1;
  EXPECT_EQ(EstimateGpuMemory(Llama31_8B(), s).offload_staging, 16 * kGiB);
  s.tp_size = 2;
  EXPECT_EQ(EstimateGpuMemory(Llama31_8B(), s).offload_staging, 8 * kGiB);
  const absl::Status st = CheckFits(e, /*offloaded=*/true, 20 * kGiB);
  EXPECT_THAT(st.message(), HasSubstr("prompt staging 16.0 GiB"));
  EXPECT_THAT(CheckFits(e, /*offloaded=*/false, 20 * kGiB).message(),
              ::testing::Not(HasSubstr("staging")));
}

// The weights of apr-tiny as its checkpoint stores them (bf16): the sum of its tensors.
TEST(MemoryEstimate, WeightsOfAprTinyEqualItsCheckpoint) {
  auto config = LoadModelConfig("models/apr-tiny/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  auto file = SafetensorsFile::Open("models/apr-tiny/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  int64_t bytes = 0;
  for (const auto& t : (*file)->tensors()) bytes += static_cast<int64_t>(t.nbytes);
  EXPECT_EQ(EstimateGpuMemory(*config, {}).weights, bytes);
}

// Llama-3.1-8B: 8.03 B parameters; 128 KiB of KV per token (32 layers x 8 KV heads x 128
// x K and V x 2 bytes), so 16 GiB for one 128K sequence.
TEST(MemoryEstimate, Llama8BAt128K) {
  MemoryShape s;
  s.max_sequences = 1;
  const GpuMemoryEstimate e = EstimateGpuMemory(Llama31_8B(), s);
  EXPECT_EQ(e.weights, 2 * int64_t{8030261248});
  EXPECT_EQ(e.resident_kv, 16 * kGiB);
  EXPECT_EQ(e.host_kv, 16 * kGiB);
  EXPECT_EQ(e.predictor_state, 0);
  // Offloaded, each (layer, KV head) keeps 4 sink + 56 predicted + 5 local + 16 spare
  // blocks of 8 KiB on the GPU: 256 x 81 x 8 KiB.
  EXPECT_EQ(e.offload_cache, int64_t{256} * 81 * 8192);
  // Tensor parallelism halves the KV heads and the projections per rank, not the
  // embeddings.
  s.tp_size = 2;
  const GpuMemoryEstimate half = EstimateGpuMemory(Llama31_8B(), s);
  EXPECT_EQ(half.resident_kv, 8 * kGiB);
  EXPECT_EQ(half.weights, 2 * ((8030261248 - 2 * int64_t{128256} * 4096 - 4096 - 32 * 8192) / 2 +
                               2 * int64_t{128256} * 4096 + 4096 + 32 * 8192));
}

TEST(MemoryEstimate, ContextIsCappedByTheModel) {
  MemoryShape s;
  s.max_sequences = 2;
  s.max_context = 1 << 20;
  EXPECT_EQ(EstimateGpuMemory(Llama31_8B(), s).resident_kv, 32 * kGiB);
  s.max_context = 4096;
  EXPECT_EQ(EstimateGpuMemory(Llama31_8B(), s).resident_kv, kGiB);
}

TEST(MemoryEstimate, PredictorStateScalesWithTheContext) {
  MemoryShape s;
  s.max_sequences = 1;
  s.sparse = true;
  // Per (layer, KV head) and block: 72 history rows + 72 kept R rows + 1 column sum, as
  // floats; plus one pooled maximum per query head of each block.
  const int64_t blocks = 8192;
  EXPECT_EQ(EstimateGpuMemory(Llama31_8B(), s).predictor_state,
            4 * 256 * blocks * 145 + 4 * 8 * blocks * 4);
}

TEST(ChoosePlacement, ResidentWhenItFitsElseHost) {
  MemoryShape s;
  s.max_sequences = 4;
  s.sparse = true;
  const GpuMemoryEstimate e = EstimateGpuMemory(Llama31_8B(), s);
  // 15 GiB of weights + 64 GiB of KV + 4.5 GiB of predictor state + 2 GiB: not in 80 GiB.
  ASSERT_GT(e.ResidentTotal(), 80 * kGiB);
  ASSERT_LT(e.ResidentTotal(), 139 * kGiB);
  EXPECT_EQ(*ChoosePlacement(e, 139 * kGiB, true, "m/predictor.safetensors"),
            PlacementChoice::kResident);
  EXPECT_EQ(*ChoosePlacement(e, 80 * kGiB, true, "m/predictor.safetensors"),
            PlacementChoice::kHost);
}

TEST(ChoosePlacement, ErrorsNameTheFileAndTheSizes) {
  MemoryShape s;
  s.max_sequences = 4;
  const GpuMemoryEstimate e = EstimateGpuMemory(Llama31_8B(), s);
  auto no_predictor = ChoosePlacement(e, 80 * kGiB, false, "m/predictor.safetensors");
  ASSERT_FALSE(no_predictor.ok());
  EXPECT_THAT(no_predictor.status().message(), HasSubstr("m/predictor.safetensors"));
  EXPECT_THAT(no_predictor.status().message(), HasSubstr("KV cache 64.0 GiB"));
  auto nothing = ChoosePlacement(e, 10 * kGiB, true, "m/predictor.safetensors");
  ASSERT_FALSE(nothing.ok());
  EXPECT_THAT(nothing.status().message(), HasSubstr("weights 15.0 GiB"));
  EXPECT_THAT(nothing.status().message(), HasSubstr("10.0 GiB free"));
}

TEST(CheckFits, NamesEveryPart) {
  MemoryShape s;
  s.max_sequences = 4;
  const GpuMemoryEstimate e = EstimateGpuMemory(Llama31_8B(), s);
  EXPECT_TRUE(CheckFits(e, /*offloaded=*/true, 80 * kGiB).ok());
  const absl::Status st = CheckFits(e, /*offloaded=*/false, 80 * kGiB);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(st.message(), HasSubstr("weights 15.0 GiB + KV cache 64.0 GiB"));
  EXPECT_THAT(st.message(), HasSubstr("80.0 GiB free"));
  EXPECT_THAT(st.message(), HasSubstr("placement HOST or AUTO"));
}

}  // namespace
}  // namespace apr::cuda
