// Mutation tests for the config.json parser: every variant of a real config either
// parses into a config the runtime can use or fails with an error naming the file, and
// never crashes (run under --config=asan too; each variant is an exact-size copy).
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
#include "runtime/model_config.h"
#include "runtime/testing/model_configs.h"

namespace apr {
namespace {

constexpr char kSource[] = "fuzz/config.json";

const std::vector<std::string>& Seeds() {
  static const auto* seeds = new std::vector<std::string>{
      testutil::kLlama2, testutil::kLlama31, testutil::kMistral, testutil::kTransformers5};
  return *seeds;
}

struct Tally {
  int parsed = 0;
  int rejected = 0;
};

bool Check(std::string_view text, Tally& tally, const std::string& what) {
  std::unique_ptr<char[]> copy(new char[text.size()]);
  if (!text.empty()) std::memcpy(copy.get(), text.data(), text.size());
  auto c = ParseModelConfig(std::string_view(copy.get(), text.size()), kSource);
  if (c.ok()) {
    ++tally.parsed;
    EXPECT_EQ(fuzz::ModelConfigViolation(*c), "") << what;
    return true;
  }
  ++tally.rejected;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << what;
  EXPECT_EQ(c.status().message().substr(0, sizeof kSource - 1), kSource) << what;
  return false;
}

TEST(ModelConfigFuzzTest, SeedsParse) {
  Tally t;
  for (const std::string& s : Seeds()) Check(s, t, s);
  EXPECT_EQ(t.parsed, 4);
}

TEST(ModelConfigFuzzTest, EveryTruncationIsRejected) {
  for (const std::string& seed : Seeds()) {
    const size_t last_brace = seed.rfind('}');
    Tally t;
    for (size_t n = 0; n <= last_brace; ++n) Check(seed.substr(0, n), t, absl::StrCat("len ", n));
    EXPECT_EQ(t.parsed, 0);
  }
}

TEST(ModelConfigFuzzTest, ByteOverwrites) {
  const std::string interesting = std::string("\"[]{},:-.0123456789eE \\nltf") + '\0' + '\xff';
  std::mt19937_64 rng(424242);
  Tally t;
  for (int i = 0; i < 20000; ++i) {
    std::string s = Seeds()[i % Seeds().size()];
    const int edits = 1 + rng() % 3;
    for (int e = 0; e < edits; ++e) {
      s[rng() % s.size()] =
          rng() % 2 ? interesting[rng() % interesting.size()] : static_cast<char>(rng());
    }
    Check(s, t, absl::StrCat("variant ", i, ": ", s));
  }
  // Many flips land in names of ignored fields or in whitespace; many break the JSON.
  EXPECT_GT(t.parsed, 1000);
  EXPECT_GT(t.rejected, 5000);
}

TEST(ModelConfigFuzzTest, ValueSplices) {
  // Replaces numbers and string values with edge values of other kinds.
  // clang-format off
  const std::vector<std::string> values = {
      "0", "1", "-1", "3", "8", "4097", "1e-300", "1e308", "1e999", "-0.0", "0.5",
      "2147483647", "2147483648", "9223372036854775807", "18446744073709551616",
      "null", "true", "\"\"", "\"silu\"", "\"llama3\"", "\"linear\"", "\"bfloat16\"",
      "\"default\"", "[]", "[1, 2, 3]", "{}", "[[[[[]]]]]"};
  // clang-format on
  std::mt19937_64 rng(5);
  Tally t;
  for (int i = 0; i < 10000; ++i) {
    std::string s = Seeds()[i % Seeds().size()];
    // Collect value tokens: digit runs and quoted strings that follow a ':' .
    std::vector<std::pair<size_t, size_t>> spans;
    for (size_t p = s.find(':'); p != std::string::npos; p = s.find(':', p + 1)) {
      size_t b = s.find_first_not_of(' ', p + 1);
      if (b == std::string::npos) break;
      size_t e = b;
      if (s[b] == '"') {
        e = s.find('"', b + 1) + 1;
      } else {
        while (e < s.size() && s[e] != ',' && s[e] != '\n' && s[e] != '}' && s[e] != '{') ++e;
      }
      if (e > b) spans.emplace_back(b, e);
    }
    ASSERT_GT(spans.size(), 10u);
    std::vector<size_t> picks = {rng() % spans.size(), rng() % spans.size()};
    std::sort(picks.rbegin(), picks.rend());
    picks.erase(std::unique(picks.begin(), picks.end()), picks.end());
    for (size_t p : picks) {
      s.replace(spans[p].first, spans[p].second - spans[p].first, values[rng() % values.size()]);
    }
    Check(s, t, absl::StrCat("splice ", i, ": ", s));
  }
  EXPECT_GT(t.parsed, 500);
  EXPECT_GT(t.rejected, 2000);
}

TEST(ModelConfigFuzzTest, RandomText) {
  const std::string alphabet = "{}[]\":,0123456789-eE. nulltruefalsehidden_size";
  std::mt19937_64 rng(77);
  Tally t;
  for (int i = 0; i < 5000; ++i) {
    std::string s(rng() % 256, '\0');
    for (char& c : s) c = rng() % 8 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
    Check(s, t, absl::StrCat("text ", i));
  }
  EXPECT_EQ(t.parsed, 0);
}

TEST(ModelConfigFuzzTest, DeepNestingDoesNotOverflowTheStack) {
  Tally t;
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  Check(deep, t, "deep array");
  Check(absl::StrCat(R"({"vocab_size": )", deep, "}"), t, "deep field");
  Check(std::string(200000, '['), t, "unclosed");
  EXPECT_EQ(t.rejected, 3);
}

}  // namespace
}  // namespace apr
