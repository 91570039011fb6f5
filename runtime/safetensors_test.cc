#include "runtime/safetensors.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/testing/safetensors_writer.h"

namespace apr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::F32Bytes;
using testutil::RawSafetensors;
using testutil::SafetensorsBytes;
using testutil::TensorSpec;
using testutil::U16Bytes;

std::vector<float> ToF32(const TensorView& t) {
  std::vector<float> out(t.numel());
  EXPECT_TRUE(ConvertToF32(t.dtype, t.data, out.size(), out.data()));
  return out;
}

std::vector<TensorSpec> MixedTensors() {
  return {
      {"w.f32", DType::kF32, {2, 2}, F32Bytes({1.0f, -2.5f, 0.0f, 1e-3f})},
      {"w.f16", DType::kF16, {3}, U16Bytes({0x3c00, 0x0001, 0x7c00})},
      {"a.bf16", DType::kBF16, {1, 2}, U16Bytes({0x3f80, 0xc000})},
      {"ids", DType::kI64, {1}, std::string("\x05\0\0\0\0\0\0\0", 8)},
      {"empty", DType::kF32, {0, 4}, ""},
  };
}

void ExpectMixedTensors(const SafetensorsFile& f, const std::string& file) {
  ASSERT_EQ(f.tensors().size(), 5u);
  // Sorted by name, whatever the header order.
  std::vector<std::string> names;
  for (const TensorView& t : f.tensors()) names.push_back(t.name);
  EXPECT_THAT(names, ElementsAre("a.bf16", "empty", "ids", "w.f16", "w.f32"));

  const TensorView* f32 = f.Find("w.f32");
  ASSERT_NE(f32, nullptr);
  EXPECT_EQ(f32->dtype, DType::kF32);
  EXPECT_THAT(f32->shape, ElementsAre(2, 2));
  EXPECT_EQ(f32->numel(), 4);
  EXPECT_EQ(f32->nbytes, 16u);
  EXPECT_EQ(f32->file, file);
  EXPECT_THAT(ToF32(*f32), ElementsAre(1.0f, -2.5f, 0.0f, 1e-3f));

  const TensorView* f16 = f.Find("w.f16");
  ASSERT_NE(f16, nullptr);
  EXPECT_EQ(f16->nbytes, 6u);
  EXPECT_THAT(ToF32(*f16),
              ElementsAre(1.0f, std::ldexp(1.0f, -24), std::numeric_limits<float>::infinity()));

  const TensorView* bf16 = f.Find("a.bf16");
  ASSERT_NE(bf16, nullptr);
  EXPECT_THAT(ToF32(*bf16), ElementsAre(1.0f, -2.0f));

  const TensorView* ids = f.Find("ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->dtype, DType::kI64);
  int64_t id;
  std::memcpy(&id, ids->data, sizeof id);
  EXPECT_EQ(id, 5);

  const TensorView* empty = f.Find("empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->numel(), 0);
  EXPECT_EQ(empty->nbytes, 0u);

  EXPECT_EQ(f.Find("missing"), nullptr);
  EXPECT_EQ(f.Find("w"), nullptr);
  EXPECT_THAT(f.metadata(), ElementsAre(std::pair<const std::string, std::string>("format", "pt")));
}

TEST(SafetensorsTest, OpenMapsFileAndReadsEveryDtype) {
  testutil::TempDir dir;
  const std::string path = dir.Join("model.safetensors");
  ASSERT_TRUE(testutil::WriteFile(path, SafetensorsBytes(MixedTensors(), {{"format", "pt"}})).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->path(), path);
  ExpectMixedTensors(**f, path);
}

TEST(SafetensorsTest, FromBytesReadsEveryDtype) {
  const std::string bytes = SafetensorsBytes(MixedTensors(), {{"format", "pt"}});
  auto f = SafetensorsFile::FromBytes(bytes, "mem");
  ASSERT_TRUE(f.ok()) << f.status();
  ExpectMixedTensors(**f, "mem");
  // Views point into the caller's bytes, not a copy.
  const TensorView* t = (*f)->Find("w.f32");
  EXPECT_GE(reinterpret_cast<const char*>(t->data), bytes.data());
  EXPECT_LE(reinterpret_cast<const char*>(t->data) + t->nbytes, bytes.data() + bytes.size());
}

TEST(SafetensorsTest, EmptyHeaderObjectHasNoTensors) {
  const std::string bytes = RawSafetensors("{}", "");
  auto f = SafetensorsFile::FromBytes(bytes, "mem");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->tensors().empty());
}

TEST(SafetensorsTest, GapsBetweenTensorsAreAllowed) {
  const std::string bytes =
      RawSafetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                     F32Bytes({1.0f, 0.0f, 2.0f}));
  auto f = SafetensorsFile::FromBytes(bytes, "mem");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(ToF32(*(*f)->Find("b")), ElementsAre(2.0f));
}

TEST(SafetensorsTest, EmptyTensorInsideAnotherRangeIsNoOverlap) {
  const std::string bytes =
      RawSafetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                     F32Bytes({1.0f, 2.0f}));
  auto f = SafetensorsFile::FromBytes(bytes, "mem");
  EXPECT_TRUE(f.ok()) << f.status();
}

TEST(SafetensorsTest, OpenMissingFileIsNotFound) {
  testutil::TempDir dir;
  auto f = SafetensorsFile::Open(dir.Join("nope.safetensors"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("nope.safetensors"));
}

TEST(SafetensorsTest, OpenDirectoryIsRejected) {
  testutil::TempDir dir;
  auto f = SafetensorsFile::Open(dir.path());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("not a regular file"));
}

TEST(SafetensorsTest, OpenShortFiles) {
  testutil::TempDir dir;
  for (size_t n : {0, 1, 7}) {
    const std::string path = dir.Join(absl::StrCat("short", n));
    ASSERT_TRUE(testutil::WriteFile(path, std::string(n, '\0')).ok());
    auto f = SafetensorsFile::Open(path);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(path));
    EXPECT_THAT(std::string(f.status().message()), HasSubstr("too short"));
  }
}

// Each malformed input must fail with InvalidArgument naming the file, and (when
// `tensor` is set) the tensor, plus a reason.
struct BadCase {
  const char* label;
  std::string bytes;
  const char* reason;
  const char* tensor = nullptr;
};

std::string Header(const std::string& entry_json, std::string_view data) {
  return RawSafetensors(absl::StrCat(R"({"t":)", entry_json, "}"), data);
}

std::string LengthThenBytes(uint64_t len, std::string_view rest) {
  return testutil::HeaderLengthBytes(len) + std::string(rest);
}

std::vector<BadCase> BadCases() {
  const std::string d16 = F32Bytes({1, 2, 3, 4});
  return {
      {"short", std::string(7, '\0'), "too short"},
      {"header past end", LengthThenBytes(1000, "{}"), "header length 1000"},
      {"header absurd", LengthThenBytes(std::numeric_limits<uint64_t>::max(), "{}"),
       "header length"},
      {"header above 100MB", LengthThenBytes(uint64_t{200} << 20, "{}"), "header length"},
      {"not json", RawSafetensors("{\"t\": ", ""), "invalid JSON"},
      {"trailing garbage", RawSafetensors("{} x", ""), "invalid JSON"},
      {"not an object", RawSafetensors("[1, 2]", ""), "must be a JSON object"},
      {"metadata not object", RawSafetensors(R"({"__metadata__": [1]})", ""),
       "'__metadata__' must be an object"},
      {"metadata value not string", RawSafetensors(R"({"__metadata__": {"k": 1}})", ""),
       "'__metadata__' entry 'k' must be a string"},
      {"entry not object", Header("[1]", d16), "entry must be an object", "t"},
      {"missing dtype", Header(R"({"shape":[4],"data_offsets":[0,16]})", d16), "dtype", "t"},
      {"unknown dtype", Header(R"({"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]})", d16),
       "unknown dtype \"F8_E4M3\"", "t"},
      {"negative dim", Header(R"({"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]})", d16),
       "must hold integers in [0, 2^63)", "t"},
      {"fractional dim", Header(R"({"dtype":"F32","shape":[2.0,2],"data_offsets":[0,16]})", d16),
       "must hold integers in [0, 2^63)", "t"},
      {"shape not array", Header(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})", d16),
       "'shape'", "t"},
      {"offsets missing", Header(R"({"dtype":"F32","shape":[4]})", d16), "data_offsets", "t"},
      {"one offset", Header(R"({"dtype":"F32","shape":[4],"data_offsets":[16]})", d16),
       "2 non-negative integers", "t"},
      {"three offsets", Header(R"({"dtype":"F32","shape":[4],"data_offsets":[0,8,16]})", d16),
       "2 non-negative integers", "t"},
      {"negative offset", Header(R"({"dtype":"F32","shape":[4],"data_offsets":[-16,0]})", d16),
       "2 non-negative integers", "t"},
      {"string offset", Header(R"({"dtype":"F32","shape":[4],"data_offsets":["0",16]})", d16),
       "2 non-negative integers", "t"},
      {"descending offsets", Header(R"({"dtype":"F32","shape":[0],"data_offsets":[16,0]})", d16),
       "not ascending", "t"},
      {"range past data", Header(R"({"dtype":"F32","shape":[8],"data_offsets":[0,32]})", d16),
       "past the data section (16 bytes)", "t"},
      {"range starts past data",
       Header(R"({"dtype":"F32","shape":[0],"data_offsets":[17,17]})", d16), "past the data", "t"},
      {"size mismatch", Header(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})", d16),
       "needs 16 bytes but data_offsets [0, 12] hold 12", "t"},
      // 2^62+1 elements x 4 bytes wraps to 4 bytes in 64-bit arithmetic.
      {"nbytes overflow wraps to match",
       Header(R"({"dtype":"F32","shape":[4611686018427387905],"data_offsets":[0,4]})", d16),
       "overflows", "t"},
      {"numel overflow",
       Header(R"({"dtype":"U8","shape":[4294967296,4294967296],)"
              R"("data_offsets":[0,0]})",
              d16),
       "overflows", "t"},
      {"numel above int64 hidden by a zero dim",
       Header(R"({"dtype":"U8","shape":[4611686018427387904,2,0],"data_offsets":[0,0]})", d16),
       "overflows", "t"},
      {"dim above int64",
       Header(R"({"dtype":"U8","shape":[9223372036854775808,0],"data_offsets":[0,0]})", d16),
       "must hold integers in [0, 2^63)", "t"},
      {"offset above uint64",
       Header(R"({"dtype":"U8","shape":[0],"data_offsets":[0,18446744073709551616]})", d16),
       "2 non-negative integers", "t"},
      {"overlap",
       RawSafetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      d16),
       "tensors 'a' and 'b' overlap", "a"},
      {"overlap not adjacent in name order",
       RawSafetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                      R"("c":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
                      d16),
       "overlap", "a"},
  };
}

TEST(SafetensorsTest, RejectsMalformedFromBytes) {
  for (const BadCase& c : BadCases()) {
    auto f = SafetensorsFile::FromBytes(c.bytes, "bad.safetensors");
    ASSERT_FALSE(f.ok()) << c.label;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.label;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr("bad.safetensors")) << c.label;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(c.reason)) << c.label;
    if (c.tensor != nullptr) {
      EXPECT_THAT(std::string(f.status().message()), HasSubstr(absl::StrCat("'", c.tensor, "'")))
          << c.label;
    }
  }
}

TEST(SafetensorsTest, RejectsMalformedFiles) {
  testutil::TempDir dir;
  for (const BadCase& c : BadCases()) {
    const std::string path = dir.Join("bad.safetensors");
    ASSERT_TRUE(testutil::WriteFile(path, c.bytes).ok());
    auto f = SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok()) << c.label;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.label;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(path)) << c.label;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(c.reason)) << c.label;
  }
}

}  // namespace
}  // namespace apr
