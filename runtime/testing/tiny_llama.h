// Writes small Llama checkpoints in Hugging Face layout, with values a test can predict.
#ifndef APRUNTIME_RUNTIME_TESTING_TINY_LLAMA_H_
#define APRUNTIME_RUNTIME_TESTING_TINY_LLAMA_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "runtime/dtype.h"
#include "runtime/testing/safetensors_writer.h"

namespace apr::testutil {

struct TinyLlama {
  int64_t vocab = 11;
  int64_t hidden = 8;
  int64_t intermediate = 12;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t head_dim = 4;  // written to config.json; heads x head_dim != hidden on purpose
  bool tie_word_embeddings = false;
  bool write_lm_head = true;
  DType dtype = DType::kF32;  // F32, F16 or BF16, for every tensor
  int shards = 1;             // 1: model.safetensors; more: shards plus the index
  // llama, qwen2 (adds q/k/v_proj.bias) or qwen3 (adds q_norm/k_norm.weight).
  std::string model_type = "llama";
};

// config.json for `m`.
std::string TinyLlamaConfig(const TinyLlama& m);

// Every tensor of `m` with transformers' names and shapes, in checkpoint order.
std::vector<TensorSpec> TinyLlamaTensors(const TinyLlama& m);

// Writes config.json and the weights into `dir`.
absl::Status WriteTinyLlama(const TinyLlama& m, const std::string& dir);

// Element `i` of tensor `name` as written: k / 64 for a small integer k derived from
// the name and i, exact in every supported dtype.
float TinyLlamaValue(std::string_view name, int64_t i);

}  // namespace apr::testutil

#endif  // APRUNTIME_RUNTIME_TESTING_TINY_LLAMA_H_
