// The decode side the continuous-batching scheduler drives: sequences are started
// (prefill plus the first sampled token) and then advanced one token per step, in
// batches. Sampling happens where the logits are, so a remote engine (a worker group,
// cluster/) moves token ids, not [batch][vocab] logits.
#ifndef APRUNTIME_RUNTIME_STEP_ENGINE_H_
#define APRUNTIME_RUNTIME_STEP_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/decoder.h"
#include "runtime/sampling.h"

namespace apr {

// Where a StartPart call's tokens lie in the prompt.
struct PromptPart {
  bool first = true;  // the prompt's first tokens: the sequence is created
  bool last = true;   // the prompt's last tokens: the first token is sampled
};
// StartPart's answer for a part that is not the last.
inline constexpr int32_t kPromptContinues = -1;

class StepEngine {
 public:
  virtual ~StepEngine() = default;
  // Longest sequence (prompt plus generated tokens) the model takes.
  virtual int64_t max_context() const = 0;
  // Prefills one part of sequence `id`'s prompt (chunked admission: a long prompt is
  // prefilled in parts between decode steps). `part.first` creates the sequence (`id`
  // unique among live ones) with a sampler seeded from `sampling`, which stays with it;
  // later parts ignore `sampling`. `part.last` completes the prompt: its first token is
  // sampled and returned; other parts return kPromptContinues. A sequence whose prompt is
  // incomplete must not be stepped (Step fails with FailedPrecondition).
  virtual absl::StatusOr<int32_t> StartPart(uint64_t id, absl::Span<const int32_t> tokens,
                                            const SamplingParams& sampling, PromptPart part) = 0;
  // The whole prompt in one call.
  absl::StatusOr<int32_t> Start(uint64_t id, absl::Span<const int32_t> prompt,
                                const SamplingParams& sampling) {
    return StartPart(id, prompt, sampling, PromptPart{});
  }
  // Appends tokens[i] to sequence ids[i] and samples each one's next token.
  virtual absl::StatusOr<std::vector<int32_t>> Step(absl::Span<const uint64_t> ids,
                                                    absl::Span<const int32_t> tokens) = 0;
  // Frees sequences; unknown ids are ignored.
  virtual void Free(absl::Span<const uint64_t> ids) = 0;
};

// A sequence and what must outlive it (e.g. its storage-tier offload), destroyed after it.
struct OwnedSequence {
  std::shared_ptr<void> owner;
  std::unique_ptr<Sequence> seq;
};

struct DecoderStepEngineOptions {
  // Makes the sequence for `id`; unset: decoder.NewSequence(). A worker whose KV cache
  // lives in a storage tier returns an offloaded sequence (cluster/worker_service.cc).
  std::function<absl::StatusOr<OwnedSequence>(uint64_t id)> new_sequence;
  // Recovery from a lost storage tier: when a prefill or a step fails with a status this
  // accepts, each sequence of the call is rebuilt with new_sequence (which reconnects,
  // or fails when the tier does not come back in time) from its token history: the
  // prompt prefilled again, then every later token decoded again, the same calls as the
  // first time, so the logits are bit-identical; its own sampler then samples, and the
  // tokens continue as the uninterrupted run's. Unset: failures are returned.
  std::function<bool(const absl::Status&)> recoverable;
};

struct DecoderStepEngineStats {
  int64_t recoveries = 0;       // calls that rebuilt their sequences after a failure
  int64_t rebuilt = 0;          // sequences rebuilt
  int64_t replayed_tokens = 0;  // tokens fed again (prompt and generated)
};

// A StepEngine over an in-process Decoder. Not thread-safe: one caller at a time.
class DecoderStepEngine : public StepEngine {
 public:
  explicit DecoderStepEngine(Decoder& decoder, DecoderStepEngineOptions options = {})
      : decoder_(decoder), options_(std::move(options)) {}

  int64_t max_context() const override { return decoder_.config().max_position_embeddings; }
  absl::StatusOr<int32_t> StartPart(uint64_t id, absl::Span<const int32_t> tokens,
                                    const SamplingParams& sampling, PromptPart part) override;
  absl::StatusOr<std::vector<int32_t>> Step(absl::Span<const uint64_t> ids,
                                            absl::Span<const int32_t> tokens) override;
  void Free(absl::Span<const uint64_t> ids) override;

  // The logits the last Start ([vocab]) or Step ([batch][vocab]) sampled from; after a
  // Step without keep_logits whose rows were all greedy, empty.
  const std::vector<float>& last_logits() const { return logits_; }
  // Whether Steps bring every row's logits to the host (default) or, for rows that sample
  // greedily, only the pick (Decoder::DecodeBatchArgMax): a worker asked for no logits
  // turns this off.
  void set_keep_logits(bool keep) { keep_logits_ = keep; }
  int64_t live_sequences() const { return static_cast<int64_t>(seqs_.size()); }
  Decoder& decoder() { return decoder_; }
  const DecoderStepEngineStats& stats() const { return stats_; }

 private:
  struct Live {
    OwnedSequence owned;  // owned.seq is destroyed before owned.owner
    Sampler sampler;
    std::vector<int32_t> history;  // every token fed: the prompt, then each step's input
    // Where each StartPart call's tokens end in history: a rebuild prefills the same parts.
    std::vector<size_t> part_ends;
    bool prompt_done = false;  // the last part has been prefilled
    Sequence& seq() { return *owned.seq; }
  };
  absl::StatusOr<OwnedSequence> NewSequence(uint64_t id);
  // Replaces `live`'s sequence with a new one fed its history; the last token's logits
  // go to `logits`. On failure `live` is left with no sequence.
  absl::Status Rebuild(uint64_t id, Live& live, std::vector<float>* logits);
  bool Recoverable(const absl::Status& s) const {
    return options_.recoverable && options_.recoverable(s);
  }

  Decoder& decoder_;
  const DecoderStepEngineOptions options_;
  DecoderStepEngineStats stats_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Live>> seqs_;
  std::vector<float> logits_;
  std::vector<int32_t> argmax_;
  bool keep_logits_ = true;
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_STEP_ENGINE_H_
