#include "runtime/prompt_input.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "runtime/model_path.h"

namespace apr {

absl::StatusOr<std::string> PromptFromFlags(const std::string& text, const std::string& file) {
  if (!file.empty() && !text.empty()) {
    return absl::InvalidArgumentError("give --prompt or --prompt_file, not both");
  }
  if (file.empty()) return text;
  std::ifstream in(ResolveUserPath(file), std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --prompt_file ", file));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace apr
