#include "runtime/json_util.h"

#include "absl/strings/str_cat.h"

namespace apr {

absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, std::string_view source) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source), ": invalid JSON: ", e.what()));
  }
}

std::string DescribeJson(const nlohmann::json& v) {
  constexpr size_t kMaxChars = 64;
  constexpr size_t kMaxArray = 8;
  bool flat = v.is_primitive();
  if (v.is_array() && v.size() <= kMaxArray) {
    flat = true;
    for (const auto& e : v) flat = flat && e.is_primitive();
  }
  if (!flat) return v.type_name();
  // `replace` keeps dump() from throwing on strings that are not UTF-8.
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > kMaxChars) s = absl::StrCat(s.substr(0, kMaxChars), "...");
  return s;
}

}  // namespace apr
