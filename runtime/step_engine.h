// The decode side the continuous-batching scheduler drives: sequences are started
// (prefill plus the first sampled token) and then advanced one token per step, in
// batches. Sampling happens where the logits are, so a remote engine (a worker group,
// cluster/) moves token ids, not [batch][vocab] logits.
#ifndef APRUNTIME_RUNTIME_STEP_ENGINE_H_
#define APRUNTIME_RUNTIME_STEP_ENGINE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/decoder.h"
#include "runtime/sampling.h"

namespace apr {

class StepEngine {
 public:
  virtual ~StepEngine() = default;
  // Longest sequence (prompt plus generated tokens) the model takes.
  virtual int64_t max_context() const = 0;
  // Creates sequence `id` (unique among live ones), prefills `prompt` and samples the
  // first token with a sampler seeded from `sampling`, which stays with the sequence.
  virtual absl::StatusOr<int32_t> Start(uint64_t id, absl::Span<const int32_t> prompt,
                                        const SamplingParams& sampling) = 0;
  // Appends tokens[i] to sequence ids[i] and samples each one's next token.
  virtual absl::StatusOr<std::vector<int32_t>> Step(absl::Span<const uint64_t> ids,
                                                    absl::Span<const int32_t> tokens) = 0;
  // Frees sequences; unknown ids are ignored.
  virtual void Free(absl::Span<const uint64_t> ids) = 0;
};

// A StepEngine over an in-process Decoder. Not thread-safe: one caller at a time.
class DecoderStepEngine : public StepEngine {
 public:
  explicit DecoderStepEngine(Decoder& decoder) : decoder_(decoder) {}

  int64_t max_context() const override { return decoder_.config().max_position_embeddings; }
  absl::StatusOr<int32_t> Start(uint64_t id, absl::Span<const int32_t> prompt,
                                const SamplingParams& sampling) override;
  absl::StatusOr<std::vector<int32_t>> Step(absl::Span<const uint64_t> ids,
                                            absl::Span<const int32_t> tokens) override;
  void Free(absl::Span<const uint64_t> ids) override;

  // The logits the last Start ([vocab]) or Step ([batch][vocab]) sampled from.
  const std::vector<float>& last_logits() const { return logits_; }
  int64_t live_sequences() const { return static_cast<int64_t>(seqs_.size()); }
  Decoder& decoder() { return decoder_; }

 private:
  struct Live {
    std::unique_ptr<Sequence> seq;
    Sampler sampler;
  };
  Decoder& decoder_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Live>> seqs_;
  std::vector<float> logits_;
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_STEP_ENGINE_H_
