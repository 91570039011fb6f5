// nlohmann/json behind absl::Status: the library throws, the runtime does not.
#ifndef APRUNTIME_RUNTIME_JSON_UTIL_H_
#define APRUNTIME_RUNTIME_JSON_UTIL_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace apr {

// Parses `text`; a syntax error becomes InvalidArgument naming `source` and the position.
absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, std::string_view source);

// A short rendering of `v` for error messages: scalars and small flat arrays as JSON
// (cut to a few dozen characters), anything else by its type ("object", "array").
// Never throws and never recurses, whatever the input.
std::string DescribeJson(const nlohmann::json& v);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_JSON_UTIL_H_
