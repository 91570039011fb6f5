// Resolving paths a user typed: relative to where they ran the command, also under
// `bazel run` (which changes directory into the runfiles tree).
#ifndef APRUNTIME_RUNTIME_MODEL_PATH_H_
#define APRUNTIME_RUNTIME_MODEL_PATH_H_

#include <string>

namespace apr {

// Absolute paths are returned unchanged; relative ones are taken against
// $BUILD_WORKING_DIRECTORY when bazel run set it, else the current directory.
std::string ResolveUserPath(const std::string& path);

// Like ResolveUserPath, and when that does not exist, against the workspace root
// ($BUILD_WORKSPACE_DIRECTORY), so `--model models/apr-tiny` works from any folder.
std::string ResolveModelDir(const std::string& path);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_MODEL_PATH_H_
