// Test helpers that build safetensors files (valid or deliberately broken) and the
// folders they live in.
#ifndef APRUNTIME_RUNTIME_TESTING_SAFETENSORS_WRITER_H_
#define APRUNTIME_RUNTIME_TESTING_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "runtime/dtype.h"

namespace apr::testutil {

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;  // written as given, even when it does not match shape x dtype
};

// Little-endian element bytes.
std::string F32Bytes(const std::vector<float>& values);
std::string U16Bytes(const std::vector<uint16_t>& values);  // F16 / BF16 bit patterns

// A file as the reference writer lays it out: tensors back to back in the given order,
// the header padded with spaces to a multiple of 8 bytes.
std::string SafetensorsBytes(const std::vector<TensorSpec>& tensors,
                             const std::map<std::string, std::string>& metadata = {});
// The 8-byte little-endian length of `header`, `header`, then `data`; nothing checked.
std::string RawSafetensors(std::string_view header, std::string_view data);
// `n` as the 8 little-endian bytes that start a safetensors file.
std::string HeaderLengthBytes(uint64_t n);

absl::Status WriteFile(const std::string& path, std::string_view contents);

// A fresh directory under $TEST_TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Join(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

}  // namespace apr::testutil

#endif  // APRUNTIME_RUNTIME_TESTING_SAFETENSORS_WRITER_H_
