#include "runtime/fuzz/invariants.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"

namespace apr::fuzz {

std::string SafetensorsViolation(const SafetensorsFile& f, std::string_view bytes) {
  // Compared as integers: a wild pointer is exactly what this looks for.
  const auto lo = reinterpret_cast<uintptr_t>(bytes.data());
  const auto hi = lo + bytes.size();
  std::vector<const TensorView*> by_start;
  const TensorView* prev = nullptr;
  unsigned checksum = 0;
  for (const TensorView& t : f.tensors()) {
    if (prev != nullptr && !(prev->name < t.name)) {
      return absl::StrCat("names not sorted and unique at '", t.name, "'");
    }
    prev = &t;
    const auto at = reinterpret_cast<uintptr_t>(t.data);
    if (at < lo || at > hi || t.nbytes > hi - at) {
      return absl::StrCat("'", t.name, "' lies outside the buffer");
    }
    // Recomputed with overflow checks: a wrapped product is the bug this looks for.
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(numel, d, &numel)) {
        return absl::StrCat("'", t.name, "' has a negative dim or numel past int64");
      }
    }
    size_t nbytes;
    if (__builtin_mul_overflow(static_cast<size_t>(numel), DTypeSize(t.dtype), &nbytes) ||
        nbytes != t.nbytes || numel != t.numel()) {
      return absl::StrCat("'", t.name, "' nbytes ", t.nbytes, " != numel x dtype size");
    }
    for (size_t i = 0; i < t.nbytes; ++i) checksum += static_cast<unsigned>(t.data[i]);
    std::vector<float> f32(std::min<size_t>(t.numel(), 64));
    ConvertToF32(t.dtype, t.data, f32.size(), f32.data());
    if (t.nbytes > 0) by_start.push_back(&t);
  }
  std::sort(by_start.begin(), by_start.end(),
            [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_start.size(); ++i) {
    if (by_start[i]->data < by_start[i - 1]->data + by_start[i - 1]->nbytes) {
      return absl::StrCat("'", by_start[i - 1]->name, "' and '", by_start[i]->name, "' overlap");
    }
  }
  // Keeps the reads above from being optimised away.
  volatile unsigned sink = checksum;
  (void)sink;
  return "";
}

std::string ModelConfigViolation(const ModelConfig& c) {
  for (int64_t v :
       {c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers,
        c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.max_position_embeddings}) {
    if (v <= 0) return "a size is not positive";
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) return "kv heads do not divide heads";
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps)) return "bad rms_norm_eps";
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) return "bad rope_theta";
  const RopeScaling& s = c.rope_scaling;
  if (s.type != RopeScaling::Type::kNone && !(s.factor > 0)) return "bad rope factor";
  if (s.type == RopeScaling::Type::kLlama3 &&
      (!(s.high_freq_factor > s.low_freq_factor) || !(s.low_freq_factor > 0) ||
       s.original_max_position_embeddings <= 0)) {
    return "bad llama3 rope parameters";
  }
  for (const auto* ids : {&c.bos_token_ids, &c.eos_token_ids}) {
    for (int64_t id : *ids) {
      if (id < 0 || id >= c.vocab_size) return absl::StrCat("token id ", id, " outside vocab");
    }
  }
  if (c.attention_bias || c.mlp_bias) return "biases accepted";
  return "";
}

}  // namespace apr::fuzz
