// The prompt of the command-line tools: --prompt text or the contents of --prompt_file.
#ifndef APRUNTIME_RUNTIME_PROMPT_INPUT_H_
#define APRUNTIME_RUNTIME_PROMPT_INPUT_H_

#include <string>

#include "absl/status/statusor.h"

namespace apr {

// `text`, or the bytes of `file` (resolved as the user typed it, see model_path.h) when
// `file` is set; InvalidArgument when both are set, NotFound when the file cannot be read.
absl::StatusOr<std::string> PromptFromFlags(const std::string& text, const std::string& file);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_PROMPT_INPUT_H_
