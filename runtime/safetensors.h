// Read-only, memory-mapped safetensors files (https://github.com/huggingface/safetensors):
// 8-byte little-endian header length, a JSON header, then raw tensor bytes.
#ifndef APRUNTIME_RUNTIME_SAFETENSORS_H_
#define APRUNTIME_RUNTIME_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/dtype.h"

namespace apr {

// One tensor inside a mapped file. `data` stays valid while the file object lives.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // the file it came from, for error messages

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps `path` and validates the whole header: every tensor's dtype is known, its byte
  // range lies inside the data section, matches shape x dtype size, and no two tensors
  // overlap. Any problem is an InvalidArgument/NotFound error naming the file.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Same validation over bytes already in memory (used by the fuzz tests); `bytes` must
  // outlive the returned object.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string_view bytes,
                                                                    std::string name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Sorted by name.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // The header's optional "__metadata__" string map (e.g. {"format": "pt"}).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const TensorView* Find(std::string_view name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_SAFETENSORS_H_
