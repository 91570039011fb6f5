#include "runtime/step_engine.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace apr {

absl::StatusOr<int32_t> DecoderStepEngine::Start(uint64_t id, absl::Span<const int32_t> prompt,
                                                 const SamplingParams& sampling) {
  if (seqs_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", id, " is already live"));
  }
  if (prompt.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", id, " has an empty prompt"));
  }
  if (absl::Status s = ValidateSamplingParams(sampling); !s.ok()) return s;
  auto live = std::make_unique<Live>(Live{decoder_.NewSequence(), Sampler(sampling)});
  if (absl::Status s = decoder_.Prefill(*live->seq, prompt, &logits_); !s.ok()) return s;
  const int32_t token = live->sampler.Sample(logits_);
  seqs_.emplace(id, std::move(live));
  return token;
}

absl::StatusOr<std::vector<int32_t>> DecoderStepEngine::Step(absl::Span<const uint64_t> ids,
                                                             absl::Span<const int32_t> tokens) {
  if (ids.size() != tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("step has ", ids.size(), " sequences but ", tokens.size(), " tokens"));
  }
  std::vector<Live*> lives;
  std::vector<Sequence*> seqs;
  absl::flat_hash_set<uint64_t> seen;
  for (uint64_t id : ids) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no live sequence ", id));
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", id, " is listed twice"));
    }
    lives.push_back(it->second.get());
    seqs.push_back(it->second->seq.get());
  }
  std::vector<int32_t> next;
  if (ids.empty()) return next;
  if (absl::Status s = decoder_.DecodeBatch(seqs, tokens, &logits_); !s.ok()) return s;
  const size_t vocab = logits_.size() / ids.size();
  for (size_t i = 0; i < lives.size(); ++i) {
    next.push_back(
        lives[i]->sampler.Sample(absl::MakeConstSpan(logits_).subspan(i * vocab, vocab)));
  }
  return next;
}

void DecoderStepEngine::Free(absl::Span<const uint64_t> ids) {
  for (uint64_t id : ids) seqs_.erase(id);
}

}  // namespace apr
