// Whole-file reads for the small text files of a model folder (config.json, index).
#ifndef APRUNTIME_RUNTIME_FILE_UTIL_H_
#define APRUNTIME_RUNTIME_FILE_UTIL_H_

#include <string>

#include "absl/status/statusor.h"

namespace apr {

// The bytes of `path`; NotFound when it does not exist, other I/O errors as errno says.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_FILE_UTIL_H_
