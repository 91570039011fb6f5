#include "cluster/model_check.h"

#include <cstdlib>
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::cluster {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

ClusterConfig WithModel(const std::string& path, v1::KvCache::Placement placement,
                        int budget) {
  ClusterConfig c;
  c.mutable_model()->set_path(path);
  c.mutable_kv_cache()->set_placement(placement);
  c.mutable_kv_cache()->set_budget_tokens(budget);
  return c;
}

// apr-tiny without its predictor: config.json only.
std::string ModelWithoutPredictor() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path dir = fs::path(tmp ? tmp : "/tmp") / "no-predictor";
  fs::create_directories(dir);
  fs::copy_file("models/apr-tiny/config.json", dir / "config.json",
                fs::copy_options::overwrite_existing);
  return dir.string();
}

TEST(ModelCheck, AcceptsTheBundledModelInEveryPlacement) {
  for (auto p : {v1::KvCache::PLACEMENT_UNSPECIFIED, v1::KvCache::PLACEMENT_HOST,
                 v1::KvCache::PLACEMENT_REMOTE, v1::KvCache::PLACEMENT_AUTO}) {
    EXPECT_TRUE(CheckConfigAgainstModel(WithModel("models/apr-tiny", p, 1024)).ok()) << p;
  }
}

TEST(ModelCheck, OffloadWithoutPredictorNamesTheFile) {
  const std::string dir = ModelWithoutPredictor();
  for (auto p : {v1::KvCache::PLACEMENT_HOST, v1::KvCache::PLACEMENT_REMOTE}) {
    const absl::Status s = CheckConfigAgainstModel(WithModel(dir, p, 1024));
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr(dir + "/predictor.safetensors does not exist"));
    EXPECT_THAT(s.message(), HasSubstr(v1::KvCache::Placement_Name(p)));
  }
  // Resident and AUTO do not need it up front (AUTO fails on the worker, with the sizes,
  // only if the cache does not fit the GPU).
  EXPECT_TRUE(CheckConfigAgainstModel(WithModel(dir, v1::KvCache::PLACEMENT_AUTO, 1024)).ok());
  EXPECT_TRUE(
      CheckConfigAgainstModel(WithModel(dir, v1::KvCache::PLACEMENT_UNSPECIFIED, 1024)).ok());
}

TEST(ModelCheck, BudgetMustFitTheContextAndExceedTheFixedBlocks) {
  const absl::Status large =
      CheckConfigAgainstModel(WithModel("models/apr-tiny", v1::KvCache::PLACEMENT_HOST, 8192));
  ASSERT_FALSE(large.ok());
  EXPECT_THAT(large.message(), HasSubstr("kv_cache.budget_tokens 8192"));
  EXPECT_THAT(large.message(), HasSubstr("max_position_embeddings 4096"));
  EXPECT_TRUE(
      CheckConfigAgainstModel(WithModel("models/apr-tiny", v1::KvCache::PLACEMENT_HOST, 4096))
          .ok());
  const absl::Status small =
      CheckConfigAgainstModel(WithModel("models/apr-tiny", v1::KvCache::PLACEMENT_HOST, 140));
  ASSERT_FALSE(small.ok());
  EXPECT_THAT(small.message(), HasSubstr("must be at least 144"));
}

// apr-tiny has 6 layers: up to 5 may attend densely, one must stay sparse.
TEST(ModelCheck, DenseLayersLeaveOneSparseLayer) {
  ClusterConfig c = WithModel("models/apr-tiny", v1::KvCache::PLACEMENT_HOST, 1024);
  c.mutable_kv_cache()->set_dense_layers(5);
  EXPECT_TRUE(CheckConfigAgainstModel(c).ok());
  c.mutable_kv_cache()->set_dense_layers(6);
  const absl::Status s = CheckConfigAgainstModel(c);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("kv_cache.dense_layers 6: the model has 6 layers"));
}

TEST(ModelCheck, MissingModelNamesThePath) {
  const absl::Status s = CheckConfigAgainstModel(
      WithModel("models/no-such-model", v1::KvCache::PLACEMENT_UNSPECIFIED, 1024));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("models/no-such-model"));
}

}  // namespace
}  // namespace apr::cluster
