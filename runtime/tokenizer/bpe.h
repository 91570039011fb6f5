// The BPE model: turns one pre-token into vocabulary ids by applying merges in rank order.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_BPE_H_
#define APRUNTIME_RUNTIME_TOKENIZER_BPE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "runtime/tokenizer/string_map.h"

namespace apr {

class Bpe {
 public:
  struct Options {
    // Emitted for characters missing from the vocabulary; without it they are
    // dropped, as Hugging Face's BPE does.
    std::optional<std::string> unk_token;
    bool fuse_unk = false;  // consecutive unknown characters give one unk id
    // A pre-token that is itself in the vocabulary is emitted whole (Llama-3).
    bool ignore_merges = false;
    // A character missing from the vocabulary becomes the "<0xNN>" tokens of its UTF-8
    // bytes, when all of them are in the vocabulary (SentencePiece-style BPE).
    bool byte_fallback = false;
  };
  using Vocab = StringMap<int32_t>;
  using Merges = std::vector<std::pair<std::string, std::string>>;

  // Merge i has rank i; a pair listed twice keeps its later rank, as in Hugging Face.
  // Errors when a merge's parts or result are not in the vocabulary, or unk_token is not.
  static absl::StatusOr<std::unique_ptr<Bpe>> Create(Vocab vocab, const Merges& merges,
                                                     Options options);

  // Appends the ids of `word` to `ids`.
  void Tokenize(std::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  const std::string* IdToToken(int32_t id) const;  // nullptr when unknown
  size_t vocab_entries() const { return vocab_.size(); }
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct MergeResult {
    int32_t rank;
    int32_t id;
  };
  Bpe() = default;
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  void Merge(std::string_view word, std::vector<int32_t>* ids) const;
  // The ids of `word`'s characters before any merge (Hugging Face's merge_word).
  std::vector<int32_t> InitialIds(std::string_view word) const;
  // Appends the "<0xNN>" ids of `bytes`; false (and nothing appended) if one is missing.
  bool AppendByteFallback(std::string_view bytes, std::vector<int32_t>* ids) const;

  Vocab vocab_;
  std::vector<const std::string*> id_to_token_;  // into vocab_'s keys
  absl::flat_hash_map<uint64_t, MergeResult> merges_;
  Options options_;
  std::optional<int32_t> unk_id_;
  int32_t byte_ids_[256];  // "<0xNN>" ids, -1 where missing (byte_fallback)

  // Words repeat a lot in text: remember their ids. Bounded; full means no more inserts.
  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable absl::Mutex cache_mutex_;
  mutable StringMap<std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(cache_mutex_);
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_BPE_H_
