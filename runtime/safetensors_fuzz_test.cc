// Mutation tests for the safetensors parser: every variant of a valid file either opens
// with consistent views or fails with an error naming the file, and never crashes.
// Meant to run under --config=asan: each variant is parsed from its own exact-size heap
// copy, so a read one byte past the end is reported.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/fuzz/invariants.h"
#include "runtime/safetensors.h"
#include "runtime/testing/safetensors_writer.h"

namespace apr {
namespace {

using testutil::TensorSpec;

constexpr char kName[] = "fuzz.safetensors";

std::string Seed() {
  std::vector<float> f32(12);
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = 0.5f * i - 2.0f;
  return testutil::SafetensorsBytes(
      {
          {"model.embed_tokens.weight", DType::kF32, {3, 4}, testutil::F32Bytes(f32)},
          {"model.norm.weight", DType::kBF16, {4}, testutil::U16Bytes({0x3f80, 0, 0xc000, 1})},
          {"model.layers.0.mlp.up_proj.weight",
           DType::kF16,
           {2, 2},
           testutil::U16Bytes({0x3c00, 0x0001, 0x7c00, 0x8000})},
          {"ids", DType::kI32, {2}, std::string("\x01\0\0\0\x02\0\0\0", 8)},
          {"empty", DType::kF32, {0, 3}, ""},
      },
      {{"format", "pt"}});
}

uint64_t HeaderLength(const std::string& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(file[i]);
  return n;
}

// `s` with its first 8 bytes replaced by `len`.
std::string WithHeaderLength(const std::string& s, uint64_t len) {
  return testutil::HeaderLengthBytes(len) + s.substr(8);
}

struct Tally {
  int opened = 0;
  int rejected = 0;
};

// Parses `bytes` from an exact-size copy; any broken rule is a test failure.
// Returns whether it opened.
bool Check(std::string_view bytes, Tally& tally, const std::string& what) {
  std::unique_ptr<char[]> copy(new char[bytes.size()]);
  if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
  const std::string_view view(copy.get(), bytes.size());
  auto f = SafetensorsFile::FromBytes(view, kName);
  if (f.ok()) {
    ++tally.opened;
    EXPECT_EQ(fuzz::SafetensorsViolation(**f, view), "") << what;
    return true;
  }
  ++tally.rejected;
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << what;
  EXPECT_EQ(f.status().message().substr(0, sizeof kName - 1), kName) << what;
  return false;
}

TEST(SafetensorsFuzzTest, SeedOpens) {
  Tally t;
  Check(Seed(), t, "seed");
  EXPECT_EQ(t.opened, 1);
}

TEST(SafetensorsFuzzTest, EveryTruncationIsRejected) {
  // The last tensor ends at the last byte, so no proper prefix is a valid file.
  const std::string seed = Seed();
  Tally t;
  for (size_t n = 0; n < seed.size(); ++n) Check(seed.substr(0, n), t, absl::StrCat("len ", n));
  EXPECT_EQ(t.opened, 0);
  EXPECT_EQ(t.rejected, static_cast<int>(seed.size()));
}

TEST(SafetensorsFuzzTest, EveryTruncatedFileIsRejectedByOpen) {
  const std::string seed = Seed();
  testutil::TempDir dir;
  const std::string path = dir.Join("t.safetensors");
  for (size_t n = 0; n < seed.size(); n += 3) {
    ASSERT_TRUE(testutil::WriteFile(path, seed.substr(0, n)).ok());
    auto f = SafetensorsFile::Open(path);
    EXPECT_FALSE(f.ok()) << "len " << n;
  }
}

TEST(SafetensorsFuzzTest, ByteOverwrites) {
  const std::string seed = Seed();
  const size_t header_end = 8 + HeaderLength(seed);
  // Bytes that change JSON structure, numbers and strings most.
  const std::string interesting = std::string("\"[]{},:-.0123456789eE \\") + '\0' + '\xff';
  std::mt19937_64 rng(20261123);
  Tally t;
  for (int i = 0; i < 20000; ++i) {
    std::string s = seed;
    const int edits = 1 + rng() % 4;
    for (int e = 0; e < edits; ++e) {
      // Mostly the header: the data section is opaque to the parser.
      const size_t pos = rng() % 5 != 0 ? rng() % header_end : rng() % s.size();
      s[pos] = rng() % 2 ? interesting[rng() % interesting.size()] : static_cast<char>(rng());
    }
    Check(s, t, absl::StrCat("variant ", i));
  }
  // Both outcomes must occur, or the mutations test nothing.
  EXPECT_GT(t.opened, 100);
  EXPECT_GT(t.rejected, 10000);
}

TEST(SafetensorsFuzzTest, NumberSplices) {
  // Replaces numbers in the header (dims, offsets) with edge values: overflow territory.
  const std::string seed = Seed();
  const size_t header_end = 8 + HeaderLength(seed);
  // clang-format off
  const std::vector<std::string> values = {
      "0", "1", "-1", "3", "4", "7", "8", "16", "99999", "00", "-0", "1.5", "1e308",
      "4294967296", "4611686018427387904", "4611686018427387905", "9223372036854775807",
      "9223372036854775808", "18446744073709551615", "18446744073709551616",
      // x 4 bytes wraps to 8 (ids: I32 [2]); x 16 wraps to 48 (embed: F32 [3, 4]).
      "4611686018427387906", "1152921504606846979"};
  // clang-format on
  std::vector<std::pair<size_t, size_t>> numbers;  // [begin, end) of digit runs
  for (size_t i = 8; i < header_end;) {
    if (std::isdigit(static_cast<unsigned char>(seed[i]))) {
      size_t j = i;
      while (j < header_end && std::isdigit(static_cast<unsigned char>(seed[j]))) ++j;
      numbers.emplace_back(i, j);
      i = j;
    } else {
      ++i;
    }
  }
  ASSERT_GT(numbers.size(), 10u);
  std::mt19937_64 rng(7);
  Tally t;
  for (int i = 0; i < 5000; ++i) {
    std::string header = seed.substr(8, header_end - 8);
    // Splice from the back so earlier positions stay valid.
    std::vector<size_t> picks = {rng() % numbers.size(), rng() % numbers.size()};
    std::sort(picks.rbegin(), picks.rend());
    picks.erase(std::unique(picks.begin(), picks.end()), picks.end());
    for (size_t p : picks) {
      header.replace(numbers[p].first - 8, numbers[p].second - numbers[p].first,
                     values[rng() % values.size()]);
    }
    Check(testutil::RawSafetensors(header, seed.substr(header_end)), t,
          absl::StrCat("splice ", i, ": ", header));
  }
  EXPECT_GT(t.opened, 0);
  EXPECT_GT(t.rejected, 1000);
}

TEST(SafetensorsFuzzTest, GarbageHeaderLengths) {
  const std::string seed = Seed();
  const uint64_t n = HeaderLength(seed);
  std::vector<uint64_t> lengths = {0,
                                   1,
                                   2,
                                   n - 1,
                                   n + 1,
                                   seed.size() - 8,
                                   seed.size() - 7,
                                   seed.size(),
                                   100u << 20,
                                   (100u << 20) + 1,
                                   uint64_t{1} << 32,
                                   uint64_t{1} << 63,
                                   ~uint64_t{0},
                                   ~uint64_t{0} - 7};
  std::mt19937_64 rng(99);
  for (int i = 0; i < 3000; ++i) lengths.push_back(rng());
  for (int i = 0; i < 2000; ++i) lengths.push_back(rng() % (seed.size() + 16));
  Tally t;
  for (uint64_t len : lengths) {
    // A shorter length that only drops trailing padding spaces still frames the JSON
    // (the data section then starts earlier); anything else must fail.
    if (Check(WithHeaderLength(seed, len), t, absl::StrCat("length ", len))) {
      EXPECT_LE(len, n) << len;
      EXPECT_EQ(seed.find_first_not_of(' ', 8 + len), 8 + n) << len;
    }
  }
  EXPECT_GT(t.rejected, 4900);
}

TEST(SafetensorsFuzzTest, RandomBuffers) {
  std::mt19937_64 rng(1234);
  const std::string alphabet = "{}[]\":,0123456789-eE. abcdefFIUBL_";
  Tally t;
  for (int i = 0; i < 3000; ++i) {
    const size_t header = rng() % 200;
    std::string body(header + rng() % 64, '\0');
    for (char& c : body)
      c = rng() % 4 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
    const uint64_t len = rng() % 8 ? header : rng();
    Check(WithHeaderLength(std::string(8, '\0') + body, len), t, absl::StrCat("buffer ", i));
  }
  EXPECT_EQ(t.opened + t.rejected, 3000);
}

}  // namespace
}  // namespace apr
