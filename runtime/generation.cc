#include "runtime/generation.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace apr {

std::string_view StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kMaxTokens:
      return "max_tokens";
    case StopReason::kStopToken:
      return "stop_token";
    case StopReason::kContextFull:
      return "context_full";
    case StopReason::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

absl::StatusOr<GenerationResult> Generate(Decoder& decoder, Sequence& seq,
                                          absl::Span<const int32_t> prompt,
                                          const GenerationOptions& options,
                                          const std::function<bool(int32_t)>& on_token) {
  APR_RETURN_IF_ERROR(ValidateSamplingParams(options.sampling));
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 0, got ", options.max_new_tokens));
  }
  using Clock = std::chrono::steady_clock;
  const int64_t limit = decoder.config().max_position_embeddings;
  GenerationResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  auto t0 = Clock::now();
  std::vector<float> logits;
  APR_RETURN_IF_ERROR(decoder.Prefill(seq, prompt, &logits));
  auto t1 = Clock::now();
  r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  Sampler sampler(options.sampling);
  while (static_cast<int64_t>(r.tokens.size()) < options.max_new_tokens) {
    const int32_t token = sampler.Sample(logits);
    r.tokens.push_back(token);
    if (on_token && !on_token(token)) {
      r.stop = StopReason::kCancelled;
      break;
    }
    if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) !=
        options.stop_token_ids.end()) {
      r.stop = StopReason::kStopToken;
      break;
    }
    if (static_cast<int64_t>(r.tokens.size()) == options.max_new_tokens) break;
    if (seq.length() >= limit) {
      r.stop = StopReason::kContextFull;
      break;
    }
    APR_RETURN_IF_ERROR(decoder.Decode(seq, token, &logits));
  }
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace apr
