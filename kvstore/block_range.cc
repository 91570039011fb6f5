#include "kvstore/block_range.h"

#include "absl/strings/str_cat.h"

namespace apr::kvstore {

void KeysToRanges(absl::Span<const BlockKey> keys,
                  google::protobuf::RepeatedPtrField<v1::BlockRange>* ranges) {
  v1::BlockRange* last = nullptr;
  for (const BlockKey& k : keys) {
    if (last != nullptr && last->layer() == k.layer && last->kv_head() == k.kv_head &&
        last->first_block() + last->count() == k.block) {
      last->set_count(last->count() + 1);
      continue;
    }
    last = ranges->Add();
    last->set_layer(k.layer);
    last->set_kv_head(k.kv_head);
    last->set_first_block(k.block);
    last->set_count(1);
  }
}

absl::StatusOr<std::vector<BlockKey>> RangesToKeys(
    const google::protobuf::RepeatedPtrField<v1::BlockRange>& ranges) {
  int64_t total = 0;
  for (const v1::BlockRange& r : ranges) {
    if (r.count() < 1 || r.count() > kMaxBlocksPerRequest || r.first_block() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("block range of layer ", r.layer(), " KV head ", r.kv_head(),
                       " starting at block ", r.first_block(), " has count ", r.count(),
                       " (must be in [1, ", kMaxBlocksPerRequest, "], first block >= 0)"));
    }
    total += r.count();
    if (total > kMaxBlocksPerRequest) {
      return absl::InvalidArgumentError(
          absl::StrCat("a request may name at most ", kMaxBlocksPerRequest, " blocks"));
    }
  }
  std::vector<BlockKey> keys;
  keys.reserve(total);
  for (const v1::BlockRange& r : ranges) {
    for (int64_t b = 0; b < r.count(); ++b) {
      keys.push_back({r.layer(), r.kv_head(), r.first_block() + b});
    }
  }
  return keys;
}

}  // namespace apr::kvstore
