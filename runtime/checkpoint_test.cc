#include "runtime/checkpoint.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/testing/safetensors_writer.h"
#include "runtime/testing/tiny_llama.h"

namespace apr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::F32Bytes;
using testutil::SafetensorsBytes;
using testutil::TempDir;
using testutil::TensorSpec;
using testutil::TinyLlama;
using testutil::WriteFile;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// A folder with the tiny model's config.json and the given files.
void WriteFolder(const TempDir& dir,
                 const std::vector<std::pair<std::string, std::string>>& files) {
  ASSERT_TRUE(WriteFile(dir.Join("config.json"), testutil::TinyLlamaConfig(TinyLlama{})).ok());
  for (const auto& [name, contents] : files) ASSERT_TRUE(WriteFile(dir.Join(name), contents).ok());
}

std::string TwoTensorFile(const std::string& a, const std::string& b) {
  return SafetensorsBytes({{a, DType::kF32, {2}, F32Bytes({1.0f, 2.0f})},
                           {b, DType::kF32, {1, 2}, F32Bytes({3.0f, 4.0f})}});
}

TEST(CheckpointTest, SingleFile) {
  TempDir dir;
  WriteFolder(dir, {{"model.safetensors", TwoTensorFile("a", "b")},
                    // Ignored: model.safetensors is the whole checkpoint.
                    {"other.safetensors", TwoTensorFile("c", "d")}});
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->dir(), dir.path());
  EXPECT_EQ((*ckpt)->config().hidden_size, 8);
  EXPECT_TRUE((*ckpt)->Has("a"));
  EXPECT_TRUE((*ckpt)->Has("b"));
  EXPECT_FALSE((*ckpt)->Has("c"));
  auto b = (*ckpt)->ReadF32("b", {1, 2});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(*b, ElementsAre(3.0f, 4.0f));
  auto view = (*ckpt)->Get("a", {2});
  ASSERT_TRUE(view.ok());
  EXPECT_EQ((*view)->file, dir.Join("model.safetensors"));
}

TEST(CheckpointTest, ShardedWithIndex) {
  TempDir dir;
  const std::string index = R"({"metadata": {"total_size": 32}, "weight_map": {
      "a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
      "c": "model-00002-of-00002.safetensors", "d": "model-00002-of-00002.safetensors"}})";
  WriteFolder(dir, {{"model.safetensors.index.json", index},
                    {"model-00001-of-00002.safetensors", TwoTensorFile("a", "b")},
                    {"model-00002-of-00002.safetensors", TwoTensorFile("c", "d")}});
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (const char* name : {"a", "b", "c", "d"}) EXPECT_TRUE((*ckpt)->Has(name)) << name;
  auto c = (*ckpt)->Get("c", {2});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->file, dir.Join("model-00002-of-00002.safetensors"));
  auto d = (*ckpt)->ReadF32("d", {1, 2});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(*d, ElementsAre(3.0f, 4.0f));
}

TEST(CheckpointTest, IndexDecidesWhichTensorsExist) {
  TempDir dir;
  WriteFolder(dir, {{"model.safetensors.index.json", R"({"weight_map": {"a": "s.safetensors"}})"},
                    {"s.safetensors", TwoTensorFile("a", "unlisted")}});
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE((*ckpt)->Has("a"));
  EXPECT_FALSE((*ckpt)->Has("unlisted"));
}

TEST(CheckpointTest, IndexNamesMissingShard) {
  TempDir dir;
  WriteFolder(dir, {{"model.safetensors.index.json",
                     R"({"weight_map": {"a": "s1.safetensors", "c": "s2.safetensors"}})"},
                    {"s1.safetensors", TwoTensorFile("a", "b")}});
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("lists shard s2.safetensors"));
  EXPECT_THAT(Message(ckpt.status()), HasSubstr(dir.Join("s2.safetensors")));
}

TEST(CheckpointTest, IndexTensorMissingFromItsShard) {
  TempDir dir;
  WriteFolder(dir, {{"model.safetensors.index.json",
                     R"({"weight_map": {"a": "s1.safetensors", "c": "s1.safetensors"}})"},
                    {"s1.safetensors", TwoTensorFile("a", "b")},
                    {"s2.safetensors", TwoTensorFile("c", "d")}});
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(ckpt.status()),
              HasSubstr(absl::StrCat("puts tensor 'c' in ", dir.Join("s1.safetensors"),
                                     ", which does not contain it")));
}

TEST(CheckpointTest, BrokenShardIsReportedByName) {
  TempDir dir;
  WriteFolder(dir, {{"model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors"}})"},
                    {"s1.safetensors", "garbage"}});
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(ckpt.status()), HasSubstr(dir.Join("s1.safetensors")));
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("too short"));
}

TEST(CheckpointTest, MalformedIndexes) {
  const struct {
    const char* index;
    const char* expect;
  } kCases[] = {
      {"{", "invalid JSON"},
      {"[]", "must be a JSON object"},
      {R"({"metadata": {}})", "'weight_map' must be an object"},
      {R"({"weight_map": []})", "'weight_map' must be an object"},
      {R"({"weight_map": {}})", "'weight_map' is empty"},
      {R"({"weight_map": {"a": 1}})", "tensor 'a' maps to 1, not a file name"},
      {R"({"weight_map": {"a": ""}})", "not a file name"},
      {R"({"weight_map": {"a": "../s1.safetensors"}})", "not a file name in the same folder"},
      {R"({"weight_map": {"a": "/etc/passwd"}})", "not a file name"},
      {R"({"weight_map": {"a": ".."}})", "not a file name"},
  };
  for (const auto& c : kCases) {
    TempDir dir;
    WriteFolder(dir, {{"model.safetensors.index.json", c.index},
                      {"s1.safetensors", TwoTensorFile("a", "b")}});
    auto ckpt = Checkpoint::Open(dir.path());
    EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument) << c.index;
    EXPECT_THAT(Message(ckpt.status()), HasSubstr(dir.Join("model.safetensors.index.json")))
        << c.index;
    EXPECT_THAT(Message(ckpt.status()), HasSubstr(c.expect)) << c.index;
  }
}

TEST(CheckpointTest, WithoutIndexOrModelFileTakesEverySafetensorsFile) {
  TempDir dir;
  WriteFolder(dir, {{"b.safetensors", TwoTensorFile("x", "y")},
                    {"a.safetensors", TwoTensorFile("v", "w")},
                    {"notes.txt", "not a tensor file"}});
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (const char* name : {"v", "w", "x", "y"}) EXPECT_TRUE((*ckpt)->Has(name)) << name;
}

TEST(CheckpointTest, DuplicateTensorAcrossFiles) {
  TempDir dir;
  WriteFolder(dir, {{"b.safetensors", TwoTensorFile("x", "dup")},
                    {"a.safetensors", TwoTensorFile("dup", "w")}});
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(ckpt.status()),
            absl::StrCat("tensor 'dup' is in both ", dir.Join("a.safetensors"), " and ",
                         dir.Join("b.safetensors")));
}

TEST(CheckpointTest, NoWeights) {
  TempDir dir;
  WriteFolder(dir, {});
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(ckpt.status()), HasSubstr("no model.safetensors.index.json"));
}

TEST(CheckpointTest, MissingOrBadConfig) {
  TempDir dir;
  ASSERT_TRUE(WriteFile(dir.Join("model.safetensors"), TwoTensorFile("a", "b")).ok());
  auto missing = Checkpoint::Open(dir.path());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(missing.status()), HasSubstr(dir.Join("config.json")));

  ASSERT_TRUE(WriteFile(dir.Join("config.json"), R"({"model_type": "gpt2"})").ok());
  auto bad = Checkpoint::Open(dir.path());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(bad.status()), HasSubstr("model_type"));

  auto nodir = Checkpoint::Open(dir.Join("nope"));
  EXPECT_EQ(nodir.status().code(), absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, GetChecksShapeExactly) {
  TempDir dir;
  TinyLlama m;
  m.shards = 2;
  ASSERT_TRUE(WriteTinyLlama(m, dir.path()).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  ASSERT_TRUE((*ckpt)->Get(name, {12, 8}).ok());

  auto wrong = (*ckpt)->Get(name, {24, 8});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(wrong.status()),
            absl::StrCat(name, " in ", dir.Join("model-00002-of-00002.safetensors"),
                         " has shape [12, 8], expected [24, 8]"));
  // Same element count, other layout; and a different rank.
  EXPECT_FALSE((*ckpt)->Get(name, {8, 12}).ok());
  EXPECT_FALSE((*ckpt)->Get(name, {96}).ok());
  EXPECT_FALSE((*ckpt)->ReadF32(name, {12, 8, 1}).ok());

  auto absent = (*ckpt)->Get("model.layers.2.mlp.up_proj.weight", {12, 8});
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Message(absent.status()),
            absl::StrCat("tensor model.layers.2.mlp.up_proj.weight not found in checkpoint ",
                         dir.path()));
}

TEST(CheckpointTest, ReadF32ConvertsHalfTypesAndRejectsIntegers) {
  TempDir dir;
  WriteFolder(dir,
              {{"model.safetensors",
                SafetensorsBytes({{"h", DType::kF16, {2}, testutil::U16Bytes({0x3c00, 0x0001})},
                                  {"b", DType::kBF16, {2}, testutil::U16Bytes({0x3f80, 0xc000})},
                                  {"i", DType::kI32, {1}, std::string(4, '\0')}})}});
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto h = (*ckpt)->ReadF32("h", {2});
  ASSERT_TRUE(h.ok());
  EXPECT_THAT(*h, ElementsAre(1.0f, std::ldexp(1.0f, -24)));
  auto b = (*ckpt)->ReadF32("b", {2});
  ASSERT_TRUE(b.ok());
  EXPECT_THAT(*b, ElementsAre(1.0f, -2.0f));
  auto i = (*ckpt)->ReadF32("i", {1});
  EXPECT_EQ(i.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(i.status()), HasSubstr("has dtype I32, expected a floating type"));
}

}  // namespace
}  // namespace apr
