#include "runtime/testing/safetensors_writer.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace apr::testutil {

namespace {

template <typename T>
std::string LittleEndianBytes(const std::vector<T>& values) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

}  // namespace

std::string F32Bytes(const std::vector<float>& values) { return LittleEndianBytes(values); }
std::string U16Bytes(const std::vector<uint16_t>& values) { return LittleEndianBytes(values); }

std::string SafetensorsBytes(const std::vector<TensorSpec>& tensors,
                             const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (const TensorSpec& t : tensors) {
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return RawSafetensors(text, data);
}

std::string HeaderLengthBytes(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

std::string RawSafetensors(std::string_view header, std::string_view data) {
  std::string out = HeaderLengthBytes(header.size());
  out.append(header);
  out.append(data);
  return out;
}

absl::Status WriteFile(const std::string& path, std::string_view contents) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot create ", path));
  if (std::fwrite(contents.data(), 1, contents.size(), f.get()) != contents.size()) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

TempDir::TempDir() {
  const char* root = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(root != nullptr ? root : "/tmp", "/apr_test_XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace apr::testutil
