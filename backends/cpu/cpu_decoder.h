// The CPU reference backend: the Llama-family forward pass (Llama, Mistral with its sliding
// window, Qwen2's q/k/v biases, Qwen3's q/k norms; every RoPE type) in float32 arithmetic
// (weights of any checkpoint dtype are widened at load), with a KV cache per sequence. It is the
// reference the CUDA backend and the sparse-attention policies are checked against.
#ifndef APRUNTIME_BACKENDS_CPU_CPU_DECODER_H_
#define APRUNTIME_BACKENDS_CPU_CPU_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/decoder.h"
#include "runtime/kv_offload.h"
#include "runtime/llama_weights.h"

namespace apr::cpu {

class CpuDecoder : public Decoder {
 public:
  explicit CpuDecoder(LlamaWeights weights);
  // Opens the checkpoint folder and loads its weights.
  static absl::StatusOr<std::unique_ptr<CpuDecoder>> Load(const std::string& model_dir);

  const ModelConfig& config() const override { return w_.config; }
  std::string device() const override { return "cpu"; }
  std::unique_ptr<Sequence> NewSequence(AttentionHooks* hooks = nullptr) override;
  // A sequence whose completed KV blocks are written to `offload` (prefill and decode) and
  // whose decode attention reads the selected complete blocks back from it instead of
  // from the in-process cache (the partial tail block is always in-process). Tokens and
  // logits are bit-identical to NewSequence(hooks) when the offload returns the bytes it
  // was given. The in-process cache is still kept in full: prefill attention and the
  // hooks' KeysView read it. `offload` (not owned) must outlive the sequence and have
  // block_bytes() == 2 x 16 x head_dim x 4 (float32); InvalidArgument otherwise.
  // A storage error fails the call and leaves the sequence unusable (FailedPrecondition).
  absl::StatusOr<std::unique_ptr<Sequence>> NewOffloadedSequence(KvOffload* offload,
                                                                 AttentionHooks* hooks = nullptr);
  absl::Status Prefill(Sequence& seq, absl::Span<const int32_t> tokens,
                       std::vector<float>* last_logits,
                       std::vector<float>* all_logits = nullptr) override;
  absl::Status DecodeBatch(absl::Span<Sequence* const> seqs, absl::Span<const int32_t> tokens,
                           std::vector<float>* logits) override;

  // A copy of `seq` (its KV cache and length; `seq` must come from this decoder) that
  // continues with `hooks`. CPU only: the evaluation harness prefills a prompt once and
  // decodes it under many policies. The hooks of the copy see no prefill. Offloaded
  // sequences are refused (the copy would share their KvOffload).
  absl::StatusOr<std::unique_ptr<Sequence>> Fork(const Sequence& seq,
                                                 AttentionHooks* hooks = nullptr) const;

 private:
  class CpuSequence;
  absl::Status CheckTokens(const CpuSequence& seq, absl::Span<const int32_t> tokens) const;
  // Runs `tokens` at positions [seq.length(), ...) through every layer; leaves the final
  // hidden states (before the last norm) in `x` ([n][hidden]).
  // `decode` marks a decode step (one token; the hooks select and observe) as opposed to
  // prefill (the hooks observe the last prompt rows).
  absl::Status Forward(CpuSequence& seq, absl::Span<const int32_t> tokens, bool decode,
                       std::vector<float>& x);
  void Logits(const float* x, int64_t rows, float* logits) const;

  LlamaWeights w_;
};

}  // namespace apr::cpu

#endif  // APRUNTIME_BACKENDS_CPU_CPU_DECODER_H_
