#include "backends/cuda/cuda_weights.h"

#include <cmath>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/fill.h"
#include "backends/cuda/model_support.h"
#include "backends/cuda/tensor_parallel.h"
#include "runtime/dtype.h"

namespace apr::cuda {
namespace {

struct Sizes {
  int64_t qkv, o, gu, down, layer, embed, lm_head;
};

// Per layer, the float32 extras after the hidden-size norms: Qwen2's q/k/v biases, Qwen3's
// q and k norm weights.
int64_t LayerExtraFloats(const ModelConfig& c) {
  const int64_t qkv_rows = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
  return (c.qkv_bias ? qkv_rows : 0) + (c.qk_norm ? 2 * c.head_dim : 0);
}

Sizes SizesOf(const ModelConfig& c) {
  Sizes s;
  const int64_t h = c.hidden_size, hd = c.head_dim;
  s.qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * hd * h;
  s.o = h * c.num_attention_heads * hd;
  s.gu = 2 * c.intermediate_size * h;
  s.down = h * c.intermediate_size;
  s.layer = s.qkv + s.o + s.gu + s.down;
  s.embed = c.vocab_size * h;
  s.lm_head = c.tie_word_embeddings ? 0 : s.embed;
  return s;
}

// Converts a checkpoint tensor to bf16 bits.
absl::Status ToBf16(const TensorView& t, std::vector<uint16_t>* out) {
  const int64_t n = t.numel();
  out->resize(n);
  switch (t.dtype) {
    case DType::kBF16:
      std::memcpy(out->data(), t.data, n * 2);
      return absl::OkStatus();
    case DType::kF32: {
      const float* f = reinterpret_cast<const float*>(t.data);
      for (int64_t i = 0; i < n; ++i) (*out)[i] = F32ToBf16(f[i]);
      return absl::OkStatus();
    }
    case DType::kF16: {
      const uint16_t* f = reinterpret_cast<const uint16_t*>(t.data);
      for (int64_t i = 0; i < n; ++i) (*out)[i] = F32ToBf16(F16ToF32(f[i]));
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor ", t.name, " has dtype ",
                                                     std::string(DTypeName(t.dtype)),
                                                     "; expected F32, F16 or BF16"));
  }
}

absl::Status UploadBf16(const Checkpoint& ckpt, const std::string& name,
                        const std::vector<int64_t>& shape, const __nv_bfloat16* dst) {
  absl::StatusOr<const TensorView*> t = ckpt.Get(name, shape);
  if (!t.ok()) return t.status();
  std::vector<uint16_t> bits;
  APR_RETURN_IF_ERROR(ToBf16(**t, &bits));
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(const_cast<__nv_bfloat16*>(dst), bits.data(), bits.size() * 2,
                                      cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

// Rows [row0, row0 + rows) x columns [col0, col0 + cols) of the 2-D tensor `name` (shape
// {R, C}, checked) as bf16 into dst ([rows][cols]): one rank's shard of a matrix.
absl::Status UploadBf16Slice(const Checkpoint& ckpt, const std::string& name,
                             const std::vector<int64_t>& shape, int64_t row0, int64_t rows,
                             int64_t col0, int64_t cols, const __nv_bfloat16* dst) {
  if (row0 == 0 && rows == shape[0] && col0 == 0 && cols == shape[1])
    return UploadBf16(ckpt, name, shape, dst);
  absl::StatusOr<const TensorView*> t = ckpt.Get(name, shape);
  if (!t.ok()) return t.status();
  std::vector<uint16_t> bits;
  APR_RETURN_IF_ERROR(ToBf16(**t, &bits));
  std::vector<uint16_t> part(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(part.data() + r * cols, bits.data() + (row0 + r) * shape[1] + col0, cols * 2);
  }
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(const_cast<__nv_bfloat16*>(dst), part.data(), part.size() * 2,
                                      cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status UploadF32(const Checkpoint& ckpt, const std::string& name, int64_t n,
                       const float* dst) {
  absl::StatusOr<std::vector<float>> v = ckpt.ReadF32(name, {n});
  if (!v.ok()) return v.status();
  APR_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(const_cast<float*>(dst), v->data(), n * sizeof(float), cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

// Elements [offset, offset + count) of the 1-D tensor `name` (length n, checked) into dst:
// one rank's share of a bias.
absl::Status UploadF32Slice(const Checkpoint& ckpt, const std::string& name, int64_t n,
                            int64_t offset, int64_t count, const float* dst) {
  absl::StatusOr<std::vector<float>> v = ckpt.ReadF32(name, {n});
  if (!v.ok()) return v.status();
  APR_CUDA_RETURN_IF_ERROR(cudaMemcpy(const_cast<float*>(dst), v->data() + offset,
                                      count * sizeof(float), cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

// Qwen2's biases (this rank's heads, like the weight rows) and Qwen3's q/k norms.
absl::Status UploadAttentionExtras(const Checkpoint& ckpt, const std::string& p,
                                   const ModelConfig& full, const ModelConfig& shard, int64_t r,
                                   const CudaLayerWeights& lw) {
  const int64_t hd = full.head_dim;
  const int64_t q_dim = full.num_attention_heads * hd, kv_dim = full.num_key_value_heads * hd;
  const int64_t q_loc = shard.num_attention_heads * hd, kv_loc = shard.num_key_value_heads * hd;
  if (full.qkv_bias) {
    APR_RETURN_IF_ERROR(
        UploadF32Slice(ckpt, p + "self_attn.q_proj.bias", q_dim, r * q_loc, q_loc, lw.qkv_bias));
    APR_RETURN_IF_ERROR(UploadF32Slice(ckpt, p + "self_attn.k_proj.bias", kv_dim, r * kv_loc,
                                       kv_loc, lw.qkv_bias + q_loc));
    APR_RETURN_IF_ERROR(UploadF32Slice(ckpt, p + "self_attn.v_proj.bias", kv_dim, r * kv_loc,
                                       kv_loc, lw.qkv_bias + q_loc + kv_loc));
  }
  if (full.qk_norm) {
    APR_RETURN_IF_ERROR(UploadF32(ckpt, p + "self_attn.q_norm.weight", hd, lw.q_norm));
    APR_RETURN_IF_ERROR(UploadF32(ckpt, p + "self_attn.k_norm.weight", hd, lw.k_norm));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaWeights>> CudaWeights::Allocate(const ModelConfig& c) {
  std::unique_ptr<CudaWeights> w(new CudaWeights());
  w->config_ = c;
  const Sizes s = SizesOf(c);
  const int64_t L = c.num_hidden_layers, h = c.hidden_size;
  auto mats = DeviceBuffer<__nv_bfloat16>::Allocate(s.embed + s.lm_head + L * s.layer);
  if (!mats.ok()) return mats.status();
  w->mats_ = *std::move(mats);
  const int64_t extra = LayerExtraFloats(c);
  auto norms = DeviceBuffer<float>::Allocate((2 * L + 1) * h + L * extra);
  if (!norms.ok()) return norms.status();
  w->norms_ = *std::move(norms);
  __nv_bfloat16* p = w->mats_.get();
  w->embed_ = p;
  p += s.embed;
  w->lm_head_ = c.tie_word_embeddings ? w->embed_ : p;
  p += s.lm_head;
  float* n = w->norms_.get();
  w->layers_.resize(L);
  for (int64_t i = 0; i < L; ++i) {
    CudaLayerWeights& lw = w->layers_[i];
    lw.qkv = p;
    lw.o = p + s.qkv;
    lw.gate_up = p + s.qkv + s.o;
    lw.down = p + s.qkv + s.o + s.gu;
    p += s.layer;
    lw.input_norm = n + 2 * i * h;
    lw.post_attn_norm = n + (2 * i + 1) * h;
  }
  w->final_norm_ = n + 2 * L * h;
  // The extras follow final_norm, so Llama's layout is unchanged.
  float* e = n + (2 * L + 1) * h;
  for (int64_t i = 0; i < L; ++i, e += extra) {
    CudaLayerWeights& lw = w->layers_[i];
    if (c.qkv_bias) lw.qkv_bias = e;
    if (c.qk_norm) {
      lw.q_norm = e + extra - 2 * c.head_dim;
      lw.k_norm = lw.q_norm + c.head_dim;
    }
  }
  return w;
}

int64_t CudaWeights::StepBytes() const {
  const Sizes s = SizesOf(config_);
  return 2 * (config_.num_hidden_layers * s.layer + s.embed) + static_cast<int64_t>(norms_.bytes());
}

absl::StatusOr<std::unique_ptr<CudaWeights>> CudaWeights::FromCheckpoint(const Checkpoint& ckpt,
                                                                         int tp_rank, int tp_size) {
  const ModelConfig& full = ckpt.config();
  APR_RETURN_IF_ERROR(CheckCudaSupportsModel(full));  // before any upload
  APR_RETURN_IF_ERROR(CheckShardable(full, tp_size));
  if (tp_rank < 0 || tp_rank >= tp_size)
    return absl::InvalidArgumentError(
        absl::StrCat("tensor-parallel rank ", tp_rank, " of ", tp_size));
  const ModelConfig c = ShardConfig(full, tp_size);
  auto w = Allocate(c);
  if (!w.ok()) return w.status();
  CudaWeights& cw = **w;
  cw.tp_rank_ = tp_rank;
  cw.tp_size_ = tp_size;
  const int64_t h = full.hidden_size, hd = full.head_dim, inter = full.intermediate_size;
  const int64_t q_dim = full.num_attention_heads * hd, kv_dim = full.num_key_value_heads * hd;
  // This rank's share: query heads [r * heads / n, ...) and their KV heads (a KV group's
  // query heads are consecutive), intermediate rows [r * inter / n, ...).
  const int64_t q_loc = c.num_attention_heads * hd, kv_loc = c.num_key_value_heads * hd;
  const int64_t i_loc = c.intermediate_size, r = tp_rank;
  APR_RETURN_IF_ERROR(UploadBf16(ckpt, "model.embed_tokens.weight", {c.vocab_size, h}, cw.embed_));
  if (!c.tie_word_embeddings)
    APR_RETURN_IF_ERROR(UploadBf16(ckpt, "lm_head.weight", {c.vocab_size, h}, cw.lm_head_));
  APR_RETURN_IF_ERROR(UploadF32(ckpt, "model.norm.weight", h, cw.final_norm_));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    const CudaLayerWeights& lw = cw.layers_[i];
    APR_RETURN_IF_ERROR(UploadBf16Slice(ckpt, p + "self_attn.q_proj.weight", {q_dim, h}, r * q_loc,
                                        q_loc, 0, h, lw.qkv));
    APR_RETURN_IF_ERROR(UploadBf16Slice(ckpt, p + "self_attn.k_proj.weight", {kv_dim, h},
                                        r * kv_loc, kv_loc, 0, h, lw.qkv + q_loc * h));
    APR_RETURN_IF_ERROR(UploadBf16Slice(ckpt, p + "self_attn.v_proj.weight", {kv_dim, h},
                                        r * kv_loc, kv_loc, 0, h, lw.qkv + (q_loc + kv_loc) * h));
    APR_RETURN_IF_ERROR(UploadBf16Slice(ckpt, p + "self_attn.o_proj.weight", {h, q_dim}, 0, h,
                                        r * q_loc, q_loc, lw.o));
    APR_RETURN_IF_ERROR(UploadBf16Slice(ckpt, p + "mlp.gate_proj.weight", {inter, h}, r * i_loc,
                                        i_loc, 0, h, lw.gate_up));
    APR_RETURN_IF_ERROR(UploadBf16Slice(ckpt, p + "mlp.up_proj.weight", {inter, h}, r * i_loc,
                                        i_loc, 0, h, lw.gate_up + i_loc * h));
    APR_RETURN_IF_ERROR(UploadBf16Slice(ckpt, p + "mlp.down_proj.weight", {h, inter}, 0, h,
                                        r * i_loc, i_loc, lw.down));
    APR_RETURN_IF_ERROR(UploadF32(ckpt, p + "input_layernorm.weight", h, lw.input_norm));
    APR_RETURN_IF_ERROR(
        UploadF32(ckpt, p + "post_attention_layernorm.weight", h, lw.post_attn_norm));
    APR_RETURN_IF_ERROR(UploadAttentionExtras(ckpt, p, full, c, r, lw));
  }
  return w;
}

absl::StatusOr<std::unique_ptr<CudaWeights>> CudaWeights::Random(const ModelConfig& full,
                                                                 uint64_t seed, int tp_rank,
                                                                 int tp_size) {
  APR_RETURN_IF_ERROR(CheckShardable(full, tp_size));
  if (tp_rank < 0 || tp_rank >= tp_size)
    return absl::InvalidArgumentError(
        absl::StrCat("tensor-parallel rank ", tp_rank, " of ", tp_size));
  const ModelConfig c = ShardConfig(full, tp_size);
  auto w = Allocate(c);
  if (!w.ok()) return w.status();
  CudaWeights& cw = **w;
  cw.tp_rank_ = tp_rank;
  cw.tp_size_ = tp_size;
  seed += 1000003ull * tp_rank;
  const Sizes s = SizesOf(c);
  const auto scale = [](int64_t fan_in) { return std::sqrt(3.0f / static_cast<float>(fan_in)); };
  auto fill = [&](const __nv_bfloat16* p, int64_t n, float sc) {
    return FillUniformBf16(const_cast<__nv_bfloat16*>(p), n, seed++, sc, nullptr);
  };
  APR_CUDA_RETURN_IF_ERROR(fill(cw.embed_, s.embed, 1.0f));
  if (!c.tie_word_embeddings)
    APR_CUDA_RETURN_IF_ERROR(fill(cw.lm_head_, s.lm_head, scale(c.hidden_size)));
  for (const CudaLayerWeights& lw : cw.layers_) {
    APR_CUDA_RETURN_IF_ERROR(fill(lw.qkv, s.qkv, scale(c.hidden_size)));
    APR_CUDA_RETURN_IF_ERROR(fill(lw.o, s.o, scale(full.num_attention_heads * c.head_dim)));
    APR_CUDA_RETURN_IF_ERROR(fill(lw.gate_up, s.gu, scale(c.hidden_size)));
    APR_CUDA_RETURN_IF_ERROR(fill(lw.down, s.down, scale(full.intermediate_size)));
  }
  APR_CUDA_RETURN_IF_ERROR(FillF32(cw.norms_.get(), cw.norms_.size(), 1.0f, nullptr));
  APR_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return w;
}

}  // namespace apr::cuda
