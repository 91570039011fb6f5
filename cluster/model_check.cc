#include "cluster/model_check.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backends/cuda/block_rules.h"
#include "runtime/model_config.h"
#include "runtime/model_path.h"

namespace apr::cluster {

absl::Status CheckConfigAgainstModel(const ClusterConfig& config) {
  const std::string dir =
      std::filesystem::absolute(ResolveModelDir(config.model().path())).lexically_normal();
  auto model = LoadModelConfig(dir + "/config.json");
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat("model.path \"", config.model().path(),
                                                            "\": ", model.status().message()));
  }
  std::vector<std::string> problems;
  const auto placement = config.kv_cache().placement();
  const std::string predictor = dir + "/predictor.safetensors";
  if ((placement == v1::KvCache::PLACEMENT_HOST || placement == v1::KvCache::PLACEMENT_REMOTE) &&
      !std::filesystem::exists(predictor)) {
    problems.push_back(absl::StrCat(
        "kv_cache.placement ", v1::KvCache::Placement_Name(placement),
        ": only the blocks the attention predictor selects are kept on the GPU, and ", predictor,
        " does not exist (train one: docs/PREDICTOR.md; or leave the placement "
        "unset or AUTO)"));
  }
  const int64_t budget = config.kv_cache().budget_tokens();
  const int64_t fixed = cuda::kSinkBlocks * cuda::kBlockTokens + cuda::kLocalTokens;
  if (budget > 0 && budget < fixed + cuda::kBlockTokens) {
    problems.push_back(absl::StrCat("kv_cache.budget_tokens ", budget, ": must be at least ",
                                    fixed + cuda::kBlockTokens, " (", fixed,
                                    " sink and local-window tokens plus one predicted block)"));
  }
  if (budget > model->max_position_embeddings) {
    problems.push_back(absl::StrCat("kv_cache.budget_tokens ", budget,
                                    ": larger than the model's context (max_position_embeddings ",
                                    model->max_position_embeddings, " in ", dir, "/config.json)"));
  }
  const int dense = config.kv_cache().dense_layers();
  if (dense >= model->num_hidden_layers) {
    problems.push_back(absl::StrCat("kv_cache.dense_layers ", dense, ": the model has ",
                                    model->num_hidden_layers, " layers (num_hidden_layers in ",
                                    dir, "/config.json) and at least one must stay sparse"));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "\n"));
}

}  // namespace apr::cluster
