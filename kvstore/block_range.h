// Conversions between BlockKey lists and the protocol's BlockRange messages.
#ifndef APRUNTIME_KVSTORE_BLOCK_RANGE_H_
#define APRUNTIME_KVSTORE_BLOCK_RANGE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "google/protobuf/repeated_field.h"
#include "kvstore/block_store.h"
#include "rpc/kvstore/v1/kvstore.pb.h"

namespace apr::kvstore {

// Most blocks one request may name: bounds the memory a request can make the node use.
inline constexpr int64_t kMaxBlocksPerRequest = int64_t{1} << 22;

// Runs of consecutive blocks of one table become one range each, in order.
void KeysToRanges(absl::Span<const BlockKey> keys,
                  google::protobuf::RepeatedPtrField<v1::BlockRange>* ranges);

// Expands ranges; InvalidArgument for a count below 1 or more than kMaxBlocksPerRequest
// blocks in all.
absl::StatusOr<std::vector<BlockKey>> RangesToKeys(
    const google::protobuf::RepeatedPtrField<v1::BlockRange>& ranges);

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_BLOCK_RANGE_H_
