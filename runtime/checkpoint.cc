#include "runtime/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/file_util.h"
#include "runtime/json_util.h"

namespace apr {
namespace {

constexpr char kConfigName[] = "config.json";
constexpr char kIndexName[] = "model.safetensors.index.json";
constexpr char kSingleName[] = "model.safetensors";

std::string JoinPath(const std::string& dir, std::string_view name) {
  return absl::StrCat(dir, dir.empty() || dir.back() == '/' ? "" : "/", std::string(name));
}

bool IsRegularFile(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// Tensor name -> shard file name, from the index's "weight_map".
absl::StatusOr<std::map<std::string, std::string>> ReadIndex(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<nlohmann::json> root = ParseJson(*text, path);
  if (!root.ok()) return root.status();
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parts...));
  };
  if (!root->is_object()) return bad("must be a JSON object");
  auto it = root->find("weight_map");
  if (it == root->end() || !it->is_object()) return bad("'weight_map' must be an object");
  if (it->empty()) return bad("'weight_map' is empty");
  std::map<std::string, std::string> out;
  for (const auto& [tensor, shard] : it->items()) {
    // Shards sit beside the index; a path elsewhere is a broken or hostile index.
    if (!shard.is_string() || shard.get_ref<const std::string&>().empty() ||
        shard.get_ref<const std::string&>().find('/') != std::string::npos || shard == "." ||
        shard == "..") {
      return bad("tensor '", tensor, "' maps to ", DescribeJson(shard),
                 ", not a file name in the same folder");
    }
    out[tensor] = shard.get<std::string>();
  }
  return out;
}

// Every *.safetensors file in `dir`, sorted so duplicates are reported the same way
// on every run.
absl::StatusOr<std::vector<std::string>> ListSafetensors(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() > 12 && name.ends_with(".safetensors") && IsRegularFile(it->path())) {
      files.push_back(name);
    }
  }
  if (ec) return absl::ErrnoToStatus(ec.value(), absl::StrCat("cannot list ", dir));
  std::sort(files.begin(), files.end());
  return files;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  auto ckpt = std::make_unique<Checkpoint>();
  ckpt->dir_ = dir;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(JoinPath(dir, kConfigName));
  if (!config.ok()) return config.status();
  ckpt->config_ = *std::move(config);

  auto open = [&](const std::string& name) -> absl::StatusOr<const SafetensorsFile*> {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(JoinPath(dir, name));
    if (!f.ok()) return f.status();
    ckpt->files_.push_back(*std::move(f));
    return ckpt->files_.back().get();
  };

  const std::string index_path = JoinPath(dir, kIndexName);
  if (IsRegularFile(index_path)) {
    absl::StatusOr<std::map<std::string, std::string>> index = ReadIndex(index_path);
    if (!index.ok()) return index.status();
    std::map<std::string, const SafetensorsFile*> shards;
    for (const auto& [tensor, shard] : *index) shards[shard] = nullptr;
    for (auto& [shard, file] : shards) {
      absl::StatusOr<const SafetensorsFile*> f = open(shard);
      if (!f.ok()) {
        return absl::Status(f.status().code(), absl::StrCat(index_path, " lists shard ", shard,
                                                            ": ", f.status().message()));
      }
      file = *f;
    }
    // The index decides where each tensor lives; tensors it does not list are ignored.
    for (const auto& [tensor, shard] : *index) {
      const TensorView* view = shards[shard]->Find(tensor);
      if (view == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, " puts tensor '", tensor,
                                                       "' in ", shards[shard]->path(),
                                                       ", which does not contain it"));
      }
      ckpt->by_name_[tensor] = view;
    }
    return ckpt;
  }

  std::vector<std::string> names;
  if (IsRegularFile(JoinPath(dir, kSingleName))) {
    names.push_back(kSingleName);
  } else {
    absl::StatusOr<std::vector<std::string>> listed = ListSafetensors(dir);
    if (!listed.ok()) return listed.status();
    names = *std::move(listed);
  }
  if (names.empty()) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": no ", kIndexName, ", ", kSingleName, " or other *.safetensors file"));
  }
  for (const std::string& name : names) {
    absl::StatusOr<const SafetensorsFile*> f = open(name);
    if (!f.ok()) return f.status();
    for (const TensorView& t : (*f)->tensors()) {
      auto [it, inserted] = ckpt->by_name_.emplace(t.name, &t);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "' is in both ", it->second->file, " and ", t.file));
      }
    }
  }
  return ckpt;
}

bool Checkpoint::Has(std::string_view name) const {
  return by_name_.find(std::string(name)) != by_name_.end();
}

absl::StatusOr<const TensorView*> Checkpoint::Get(std::string_view name,
                                                  const std::vector<int64_t>& shape) const {
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor ", std::string(name), " not found in checkpoint ", dir_));
  }
  const TensorView* t = it->second;
  if (t->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(t->name, " in ", t->file, " has shape ",
                                                   ShapeString(t->shape), ", expected ",
                                                   ShapeString(shape)));
  }
  return t;
}

absl::StatusOr<std::vector<float>> Checkpoint::ReadF32(std::string_view name,
                                                       const std::vector<int64_t>& shape) const {
  absl::StatusOr<const TensorView*> t = Get(name, shape);
  if (!t.ok()) return t.status();
  std::vector<float> out(static_cast<size_t>((*t)->numel()));
  if (!ConvertToF32((*t)->dtype, (*t)->data, out.size(), out.data())) {
    return absl::InvalidArgumentError(absl::StrCat((*t)->name, " in ", (*t)->file, " has dtype ",
                                                   std::string(DTypeName((*t)->dtype)),
                                                   ", expected a floating type"));
  }
  return out;
}

}  // namespace apr
