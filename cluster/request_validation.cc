#include "cluster/request_validation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace apr::cluster {

namespace gv1 = ::apr::generation::v1;

absl::StatusOr<SchedulerRequest> PrepareRequest(const gv1::GenerateRequest& req,
                                                const Tokenizer& tokenizer,
                                                const ModelConfig& model,
                                                const v1::FrontEnd& frontend) {
  SchedulerRequest r;
  switch (req.prompt_case()) {
    case gv1::GenerateRequest::kText:
      r.prompt =
          tokenizer.Encode(req.text(), !req.has_add_special_tokens() || req.add_special_tokens());
      break;
    case gv1::GenerateRequest::kTokenIds:
      r.prompt.assign(req.token_ids().ids().begin(), req.token_ids().ids().end());
      for (int32_t id : r.prompt) {
        if (id < 0 || id >= model.vocab_size) {
          return absl::InvalidArgumentError(absl::StrCat(
              "prompt token ", id, " is outside the vocabulary [0, ", model.vocab_size, ")"));
        }
      }
      break;
    default:
      return absl::InvalidArgumentError("the request has no prompt (text or token_ids)");
  }
  if (req.max_tokens() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 0, got ", req.max_tokens()));
  }
  const v1::Limits& lim = frontend.limits();
  const int64_t max_prompt =
      lim.max_prompt_tokens() > 0 ? lim.max_prompt_tokens() : model.max_position_embeddings;
  if (static_cast<int64_t>(r.prompt.size()) > max_prompt) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", r.prompt.size(), " tokens; ",
                     lim.max_prompt_tokens() > 0 ? "frontend.limits.max_prompt_tokens"
                                                 : "the model's context",
                     " is ", max_prompt));
  }
  const int64_t max_new =
      lim.max_new_tokens() > 0 ? lim.max_new_tokens() : model.max_position_embeddings;
  if (req.max_tokens() > max_new) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens is ", req.max_tokens(), "; ",
                     lim.max_new_tokens() > 0 ? "frontend.limits.max_new_tokens"
                                              : "the model's context",
                     " is ", max_new));
  }
  if (req.stop_token_ids_size() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request has ", req.stop_token_ids_size(), " stop_token_ids; at most 1024"));
  }
  r.options.max_new_tokens = req.max_tokens() > 0
                                 ? req.max_tokens()
                                 : std::min<int64_t>(frontend.default_max_tokens(), max_new);
  const gv1::SamplingParams& s = req.sampling();
  r.options.sampling = {s.temperature(), s.top_k(), s.top_p() == 0 ? 1.0f : s.top_p(), s.seed()};
  r.options.stop_token_ids.assign(req.stop_token_ids().begin(), req.stop_token_ids().end());
  if (!req.ignore_eos()) {
    for (int64_t id : model.eos_token_ids) {
      r.options.stop_token_ids.push_back(static_cast<int32_t>(id));
    }
  }
  return r;
}

}  // namespace apr::cluster
