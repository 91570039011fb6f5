#include "runtime/step_engine.h"

#include <algorithm>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace apr {

absl::StatusOr<int32_t> DecoderStepEngine::StartPart(uint64_t id,
                                                     absl::Span<const int32_t> tokens,
                                                     const SamplingParams& sampling,
                                                     PromptPart part) {
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", id, " got an empty prompt part"));
  }
  Live* live = nullptr;
  std::unique_ptr<Live> created;
  if (part.first) {
    if (seqs_.contains(id)) {
      return absl::AlreadyExistsError(absl::StrCat("sequence ", id, " is already live"));
    }
    APR_RETURN_IF_ERROR(ValidateSamplingParams(sampling));
    auto owned = NewSequence(id);
    if (!owned.ok()) return owned.status();
    created = std::make_unique<Live>(Live{*std::move(owned), Sampler(sampling), {}, {}, false});
    live = created.get();
  } else {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no live sequence ", id));
    live = it->second.get();
    if (live->prompt_done || live->owned.seq == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("sequence ", id, live->prompt_done ? " already has its whole prompt"
                                                          : " lost its KV cache"));
    }
  }
  live->history.insert(live->history.end(), tokens.begin(), tokens.end());
  live->part_ends.push_back(live->history.size());
  if (absl::Status s = decoder_.Prefill(live->seq(), tokens, &logits_); !s.ok()) {
    if (!Recoverable(s)) return s;
    ++stats_.recoveries;
    if (absl::Status r = Rebuild(id, *live, &logits_); !r.ok()) {
      return absl::Status(r.code(), absl::StrCat(r.message(), " (after: ", s.message(), ")"));
    }
  }
  if (created != nullptr) seqs_.emplace(id, std::move(created));
  if (!part.last) return kPromptContinues;
  live->prompt_done = true;
  decoder_.EndPrompt(live->seq());
  return live->sampler.Sample(logits_);
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
    if (it->second->owned.seq == nullptr) {  // an earlier recovery could not rebuild it
      return absl::FailedPreconditionError(
          absl::StrCat("sequence ", id, " lost its KV cache and could not be rebuilt"));
    }
    if (!it->second->prompt_done) {
      return absl::FailedPreconditionError(
          absl::StrCat("sequence ", id, " is still being prefilled (its last prompt part is missing)"));
    }
    lives.push_back(it->second.get());
    seqs.push_back(it->second->owned.seq.get());
  }
  std::vector<int32_t> next;
  if (ids.empty()) return next;
  for (size_t i = 0; i < lives.size(); ++i) lives[i]->history.push_back(tokens[i]);
  const size_t vocab = static_cast<size_t>(decoder_.config().vocab_size);
  bool need_logits = keep_logits_;
  for (const Live* live : lives) need_logits = need_logits || !live->sampler.greedy();
  bool picked = true;  // argmax_ holds this step's greedy picks
  if (absl::Status s = decoder_.DecodeBatchArgMax(seqs, tokens, need_logits, &argmax_, &logits_);
      !s.ok()) {
    picked = false;
    if (!Recoverable(s)) return s;
    // Every sequence of the batch may have appended K/V to some layers and not others:
    // rebuild them all from their histories (which end with this step's input token).
    ++stats_.recoveries;
    logits_.assign(vocab * ids.size(), 0.0f);
    std::vector<float> one;
    for (size_t i = 0; i < lives.size(); ++i) {
      if (absl::Status r = Rebuild(ids[i], *lives[i], &one); !r.ok()) {
        return absl::Status(r.code(), absl::StrCat(r.message(), " (after: ", s.message(), ")"));
      }
      std::copy(one.begin(), one.end(), logits_.begin() + i * vocab);
    }
  }
  for (size_t i = 0; i < lives.size(); ++i) {
    Sampler& sampler = lives[i]->sampler;
    next.push_back(picked && sampler.greedy()
                       ? argmax_[i]
                       : sampler.Sample(absl::MakeConstSpan(logits_).subspan(i * vocab, vocab)));
  }
  return next;
}

absl::StatusOr<OwnedSequence> DecoderStepEngine::NewSequence(uint64_t id) {
  if (options_.new_sequence) return options_.new_sequence(id);
  return OwnedSequence{nullptr, decoder_.NewSequence()};
}

absl::Status DecoderStepEngine::Rebuild(uint64_t id, Live& live, std::vector<float>* logits) {
  // The old sequence (and its place in the tier) goes first: the new one takes its id.
  live.owned = OwnedSequence{};
  auto owned = NewSequence(id);
  if (!owned.ok()) return owned.status();
  live.owned = *std::move(owned);
  ++stats_.rebuilt;
  stats_.replayed_tokens += static_cast<int64_t>(live.history.size());
  // The first run's calls again: each prompt part prefilled as it was, then one decode per
  // token. A single prefill of the whole history would be faster but sums in another order
  // (its logits differ by ~1e-5), which can change a sampled token; the CPU decoder's
  // decode results do not depend on the batch (step_engine_test compares the logits bit
  // for bit).
  const absl::Span<const int32_t> history = live.history;
  size_t begin = 0;
  for (size_t end : live.part_ends) {
    APR_RETURN_IF_ERROR(decoder_.Prefill(live.seq(), history.subspan(begin, end - begin), logits));
    begin = end;
  }
  if (live.prompt_done) decoder_.EndPrompt(live.seq());
  Sequence* seq = &live.seq();
  for (size_t i = begin; i < history.size(); ++i) {
    APR_RETURN_IF_ERROR(
        decoder_.DecodeBatch(absl::MakeConstSpan(&seq, 1), history.subspan(i, 1), logits));
  }
  return absl::OkStatus();
}

void DecoderStepEngine::Free(absl::Span<const uint64_t> ids) {
  for (uint64_t id : ids) seqs_.erase(id);
}

}  // namespace apr
