// The generation loop over any Decoder: prefill, then sample and decode one token at a
// time until a stop token, the token limit, the context limit or the caller stops it.
#ifndef APRUNTIME_RUNTIME_GENERATION_H_
#define APRUNTIME_RUNTIME_GENERATION_H_

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/decoder.h"
#include "runtime/sampling.h"

namespace apr {

struct GenerationOptions {
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
};

enum class StopReason { kMaxTokens, kStopToken, kContextFull, kCancelled };
std::string_view StopReasonName(StopReason r);

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated tokens, the stop token included
  StopReason stop = StopReason::kMaxTokens;
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first sampled token to the end
};

// `on_token` sees each generated token as it is produced; returning false cancels.
absl::StatusOr<GenerationResult> Generate(Decoder& decoder, Sequence& seq,
                                          absl::Span<const int32_t> prompt,
                                          const GenerationOptions& options,
                                          const std::function<bool(int32_t)>& on_token);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_GENERATION_H_
