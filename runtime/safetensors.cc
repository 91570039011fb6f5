#include "runtime/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/json_util.h"

namespace apr {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we, before
// handing the bytes to the JSON parser.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
constexpr char kMetadataKey[] = "__metadata__";

absl::Status TooShort(const std::string& file, uint64_t size) {
  return absl::InvalidArgumentError(absl::StrCat(
      file, ": ", size, " bytes is too short for a safetensors file (8-byte header length)"));
}

// Checks one header entry and points a view at its bytes (`data`: the data section).
absl::StatusOr<TensorView> ParseEntry(const std::string& file, const std::string& name,
                                      const json& entry, const std::byte* data,
                                      uint64_t data_size) {
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "': ", parts...));
  };
  if (!entry.is_object()) return bad("entry must be an object, got ", DescribeJson(entry));

  TensorView v;
  v.name = name;
  v.file = file;

  auto it = entry.find("dtype");
  if (it == entry.end() || !it->is_string()) return bad("missing or non-string 'dtype'");
  std::optional<DType> dtype = ParseDType(it->get_ref<const std::string&>());
  if (!dtype) return bad("unknown dtype ", DescribeJson(*it));
  v.dtype = *dtype;

  it = entry.find("shape");
  if (it == entry.end() || !it->is_array()) return bad("missing or non-array 'shape'");
  uint64_t numel = 1;
  for (const json& d : *it) {
    // nlohmann parses non-negative integers as unsigned, negative ones as signed.
    if (!d.is_number_unsigned() || d.get<uint64_t>() > std::numeric_limits<int64_t>::max()) {
      return bad("shape ", DescribeJson(*it), " must hold integers in [0, 2^63)");
    }
    const uint64_t dim = d.get<uint64_t>();
    v.shape.push_back(static_cast<int64_t>(dim));
    // Every partial product must fit int64: TensorView::numel() multiplies in order,
    // and a later zero dimension would otherwise hide the overflow here.
    if (__builtin_mul_overflow(numel, dim, &numel) ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return bad("shape ", DescribeJson(*it), " overflows");
    }
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, DTypeSize(v.dtype), &nbytes)) {
    return bad("shape ", DescribeJson(*it), " x ", std::string(DTypeName(v.dtype)), " overflows");
  }

  it = entry.find("data_offsets");
  if (it == entry.end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_number_unsigned() ||
      !(*it)[1].is_number_unsigned()) {
    return bad("'data_offsets' must be 2 non-negative integers, got ",
               it == entry.end() ? "nothing" : DescribeJson(*it));
  }
  const uint64_t begin = (*it)[0].get<uint64_t>(), end = (*it)[1].get<uint64_t>();
  if (begin > end) return bad("data_offsets [", begin, ", ", end, "] are not ascending");
  if (end > data_size) {
    return bad("data_offsets [", begin, ", ", end, "] reach past the data section (", data_size,
               " bytes)");
  }
  if (end - begin != nbytes) {
    return bad("shape [", absl::StrJoin(v.shape, ", "), "] x ", std::string(DTypeName(v.dtype)),
               " needs ", nbytes, " bytes but data_offsets [", begin, ", ", end, "] hold ",
               end - begin);
  }
  v.data = data + begin;
  v.nbytes = nbytes;
  return v;
}

absl::Status ParseMetadata(const std::string& file, const json& meta,
                           std::map<std::string, std::string>* out) {
  if (!meta.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": '__metadata__' must be an object of strings, got ", meta.type_name()));
  }
  for (const auto& [key, value] : meta.items()) {
    if (!value.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": '__metadata__' entry '", key, "' must be a string, got ", DescribeJson(value)));
    }
    (*out)[key] = value.get<std::string>();
  }
  return absl::OkStatus();
}

// No byte may belong to two tensors. Empty tensors own no bytes and never overlap.
absl::Status CheckNoOverlap(const std::string& file, const std::vector<TensorView>& tensors) {
  std::vector<const TensorView*> by_start;
  for (const TensorView& t : tensors) {
    if (t.nbytes > 0) by_start.push_back(&t);
  }
  std::sort(by_start.begin(), by_start.end(),
            [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_start.size(); ++i) {
    const TensorView* prev = by_start[i - 1];
    if (by_start[i]->data < prev->data + prev->nbytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensors '", prev->name, "' and '", by_start[i]->name, "' overlap"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(std::string_view bytes,
                                                                            std::string name) {
  if (bytes.size() < 8) return TooShort(name, bytes.size());
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  const uint64_t available = bytes.size() - 8;
  if (header_len > available || header_len > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": header length ", header_len, " does not fit (file holds ", available,
                     " bytes after the length, limit ", kMaxHeaderBytes, ")"));
  }
  absl::StatusOr<json> header = ParseJson(bytes.substr(8, header_len), name);
  if (!header.ok()) return header.status();
  if (!header->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": header must be a JSON object, got ", header->type_name()));
  }

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(name);
  const auto* data = reinterpret_cast<const std::byte*>(bytes.data()) + 8 + header_len;
  const uint64_t data_size = available - header_len;
  for (const auto& [key, value] : header->items()) {
    if (key == kMetadataKey) {
      absl::Status s = ParseMetadata(file->path_, value, &file->metadata_);
      if (!s.ok()) return s;
      continue;
    }
    absl::StatusOr<TensorView> view = ParseEntry(file->path_, key, value, data, data_size);
    if (!view.ok()) return view.status();
    file->tensors_.push_back(*std::move(view));
  }
  // items() walks nlohmann's std::map, so this sort is normally a no-op; Find relies on it.
  std::sort(file->tensors_.begin(), file->tensors_.end(),
            [](const TensorView& a, const TensorView& b) { return a.name < b.name; });
  absl::Status s = CheckNoOverlap(file->path_, file->tensors_);
  if (!s.ok()) return s;
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {  // also spares mmap a zero length, which it refuses
    ::close(fd);
    return TooShort(path, size);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) return absl::ErrnoToStatus(err, absl::StrCat("cannot map ", path));

  auto file = FromBytes(std::string_view(static_cast<const char*>(map), size), path);
  if (!file.ok()) {
    ::munmap(map, size);
    return file.status();
  }
  (*file)->map_ = map;
  (*file)->map_size_ = size;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorView& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

}  // namespace apr
