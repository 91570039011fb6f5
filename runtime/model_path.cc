#include "runtime/model_path.h"

#include <cstdlib>
#include <filesystem>

namespace apr {
namespace {

std::string Against(const char* env, const std::string& path) {
  const char* base = std::getenv(env);
  if (base == nullptr || *base == '\0') return path;
  return (std::filesystem::path(base) / path).string();
}

}  // namespace

std::string ResolveUserPath(const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return Against("BUILD_WORKING_DIRECTORY", path);
}

std::string ResolveModelDir(const std::string& path) {
  const std::string user = ResolveUserPath(path);
  if (std::filesystem::exists(user) || std::filesystem::path(path).is_absolute()) return user;
  const std::string ws = Against("BUILD_WORKSPACE_DIRECTORY", path);
  return std::filesystem::exists(ws) ? ws : user;
}

}  // namespace apr
