// Hash maps keyed by std::string that can be searched with a std::string_view.
// Debian's Abseil has its own absl::string_view, which its default string hash expects,
// so the transparent functors are spelled out here.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_STRING_MAP_H_
#define APRUNTIME_RUNTIME_TOKENIZER_STRING_MAP_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace apr {

struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

struct StringViewEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

template <typename V>
using StringMap = absl::flat_hash_map<std::string, V, StringViewHash, StringViewEq>;
using StringSet = absl::flat_hash_set<std::string, StringViewHash, StringViewEq>;

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_STRING_MAP_H_
