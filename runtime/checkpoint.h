// A Hugging Face model folder: config.json plus one or many *.safetensors files
// (sharded checkpoints list their tensors in model.safetensors.index.json).
#ifndef APRUNTIME_RUNTIME_CHECKPOINT_H_
#define APRUNTIME_RUNTIME_CHECKPOINT_H_

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model_config.h"
#include "runtime/safetensors.h"

namespace apr {

class Checkpoint {
 public:
  // Opens `dir`: parses config.json, maps the safetensors files (every shard named by
  // the index, or the single model.safetensors), checks the index and the shards agree.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }

  // The tensor `name` with exactly `shape`; NotFound / InvalidArgument naming the file,
  // the tensor, the expected and the actual shape.
  absl::StatusOr<const TensorView*> Get(std::string_view name,
                                        const std::vector<int64_t>& shape) const;
  bool Has(std::string_view name) const;
  // Reads `name` (F32/F16/BF16) converted to float, with the shape check of Get.
  absl::StatusOr<std::vector<float>> ReadF32(std::string_view name,
                                             const std::vector<int64_t>& shape) const;

 private:
  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, const TensorView*> by_name_;
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_CHECKPOINT_H_
