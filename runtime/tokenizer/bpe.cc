#include "runtime/tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {

absl::StatusOr<std::unique_ptr<Bpe>> Bpe::Create(Vocab vocab, const Merges& merges,
                                                 Options options) {
  std::unique_ptr<Bpe> bpe(new Bpe());
  bpe->vocab_ = std::move(vocab);
  // vocab_ is never changed again, so pointers to its keys stay valid.
  int32_t max_id = -1;
  for (const auto& [token, id] : bpe->vocab_) {
    if (id < 0)
      return absl::InvalidArgumentError(absl::StrCat("negative id for token '", token, "'"));
    max_id = std::max(max_id, id);
  }
  // id_to_token_ is as long as the largest id: a few ids far beyond the vocab's size
  // would make a small file cost gigabytes (found by runtime/fuzz/tokenizer_json_fuzzer).
  const int64_t entries = static_cast<int64_t>(bpe->vocab_.size());
  if (max_id >= 2 * entries + 1024) {
    return absl::InvalidArgumentError(absl::StrCat("vocab id ", max_id, " for ", entries,
                                                   " tokens: ids this sparse are not supported"));
  }
  bpe->id_to_token_.assign(max_id + 1, nullptr);
  for (const auto& [token, id] : bpe->vocab_) bpe->id_to_token_[id] = &token;

  bpe->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto l = bpe->vocab_.find(left);
    const auto r = bpe->vocab_.find(right);
    const auto m = bpe->vocab_.find(absl::StrCat(left, right));
    if (l == bpe->vocab_.end() || r == bpe->vocab_.end() || m == bpe->vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", rank, " ('", left, "' '", right,
                                                     "') uses or makes a token not in the vocab"));
    }
    bpe->merges_[PairKey(l->second, r->second)] = {static_cast<int32_t>(rank), m->second};
  }

  if (options.unk_token) {
    const auto it = bpe->vocab_.find(*options.unk_token);
    if (it == bpe->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unk_token '", *options.unk_token, "' is not in the vocab"));
    }
    bpe->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = bpe->vocab_.find(absl::StrFormat("<0x%02X>", b));
    bpe->byte_ids_[b] = it == bpe->vocab_.end() ? -1 : it->second;
  }
  bpe->options_ = std::move(options);
  return bpe;
}

std::optional<int32_t> Bpe::TokenToId(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::IdToToken(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size())) return nullptr;
  return id_to_token_[id];
}

void Bpe::Tokenize(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const auto it = vocab_.find(word); it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    absl::ReaderMutexLock lock(&cache_mutex_);
    if (const auto it = cache_.find(word); it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  Merge(word, ids);
  if (cacheable) {
    absl::MutexLock lock(&cache_mutex_);
    if (cache_.size() < kCacheCapacity) {
      cache_.try_emplace(word, ids->begin() + first, ids->end());
    }
  }
}

bool Bpe::AppendByteFallback(std::string_view bytes, std::vector<int32_t>* ids) const {
  for (char c : bytes) {
    if (byte_ids_[static_cast<uint8_t>(c)] < 0) return false;
  }
  for (char c : bytes) ids->push_back(byte_ids_[static_cast<uint8_t>(c)]);
  return true;
}

// One id per character; unknown ones become their byte tokens, or unk (fused or not),
// or vanish. As in Hugging Face, the unk of the latest unknown character waits until
// a known character (or the end) comes, so byte tokens in between go before it.
std::vector<int32_t> Bpe::InitialIds(std::string_view word) const {
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  bool unk_pending = false;
  for (size_t i = 0; i < word.size();) {
    const std::string_view c = word.substr(i, utf8::Next(word, i).length);
    i += c.size();
    if (const auto it = vocab_.find(c); it != vocab_.end()) {
      if (unk_pending) ids.push_back(*unk_id_);
      unk_pending = false;
      ids.push_back(it->second);
      continue;
    }
    if (options_.byte_fallback && AppendByteFallback(c, &ids)) continue;
    if (!unk_id_) continue;
    if (unk_pending && !options_.fuse_unk) ids.push_back(*unk_id_);
    unk_pending = true;
  }
  if (unk_pending) ids.push_back(*unk_id_);
  return ids;
}

// Hugging Face's Word::merge_all: symbols in a linked list, candidate merges in a heap
// ordered by (rank, position); stale heap entries are skipped when popped.
void Bpe::Merge(std::string_view word, std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool removed;
  };
  std::vector<Symbol> symbols;
  const std::vector<int32_t> initial = InitialIds(word);
  symbols.reserve(initial.size());
  for (const int32_t id : initial) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1, false});
    if (index > 0) symbols[index - 1].next = index;
  }

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t id;
    bool operator<(const Candidate& o) const {  // std::priority_queue pops the largest
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate> queue;
  const auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    const auto it = merges_.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.id});
  };
  for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos) push_pair(pos);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.id != top.id) continue;  // stale
    left.id = top.id;
    right.removed = true;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (!s.removed) ids->push_back(s.id);
  }
}

}  // namespace apr
