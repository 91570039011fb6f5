// Checks the tokenizer against encodings made by Hugging Face tokenizers
// (tools/goldens/make_tokenizer_goldens.py): every tests/golden/tokenizer/*.golden.json,
// with the tokenizer.json each one names, must match id for id and byte for byte.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr int kMaxReportedMismatches = 20;

fs::path RepoRoot() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr || workspace == nullptr) return fs::current_path();
  return fs::path(srcdir) / workspace;
}

std::vector<fs::path> GoldenFiles() {
  std::vector<fs::path> files;
  const fs::path dir = RepoRoot() / "tests/golden/tokenizer";
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 12 && name.ends_with(".golden.json")) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string Quote(const std::string& s) { return Json(utf8::Repair(s)).dump(); }

std::string Ids(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < 64; ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + (ids.size() > 64 ? ",...]" : "]");
}

void CheckGolden(const fs::path& path) {
  SCOPED_TRACE(path.string());
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot read " << path;
  Json golden;
  try {
    golden = Json::parse(in);
  } catch (const Json::exception& e) {
    FAIL() << path << ": " << e.what();
  }
  const std::string tokenizer_rel = golden.at("tokenizer").get<std::string>();
  const fs::path tokenizer_path = RepoRoot() / tokenizer_rel;
  ASSERT_TRUE(fs::exists(tokenizer_path))
      << path << " names " << tokenizer_rel << ", which is not in the test's runfiles: add it "
      << "to the data of //runtime/tokenizer:tokenizer_golden_test";
  auto tokenizer = Tokenizer::FromFile(tokenizer_path.string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();

  const Json& cases = golden.at("cases");
  ASSERT_FALSE(cases.empty()) << path << " has no cases";
  int mismatches = 0;
  const auto report = [&](const std::string& what) {
    if (++mismatches <= kMaxReportedMismatches) ADD_FAILURE() << what;
  };
  for (const Json& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto want_ids = c.at("ids").get<std::vector<int32_t>>();
    const auto want_ids_plain = c.at("ids_no_special").get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = (*tokenizer)->Encode(text, true);
    const std::vector<int32_t> ids_plain = (*tokenizer)->Encode(text, false);
    if (ids != want_ids) {
      report("Encode(" + Quote(text) + ", true)\n  got  " + Ids(ids) + "\n  want " + Ids(want_ids));
    }
    if (ids_plain != want_ids_plain) {
      report("Encode(" + Quote(text) + ", false)\n  got  " + Ids(ids_plain) + "\n  want " +
             Ids(want_ids_plain));
    }
    // DecodeText is what Hugging Face decode returns.
    const struct {
      const char* key;
      const std::vector<int32_t>& ids;
      bool skip;
    } decodes[] = {{"decoded", want_ids, false},
                   {"decoded_no_special", want_ids_plain, false},
                   {"decoded_skip_special", want_ids, true}};
    for (const auto& d : decodes) {
      const std::string got = (*tokenizer)->DecodeText(d.ids, d.skip);
      const std::string want = c.at(d.key).get<std::string>();
      if (got != want) {
        report(std::string(d.key) + " of " + Quote(text) + "\n  got  " + Quote(got) +
               "\n  want " + Quote(want));
      }
    }
  }
  EXPECT_EQ(mismatches, 0) << mismatches << " mismatches in " << cases.size() << " cases of "
                           << path;
}

TEST(TokenizerGoldenTest, MatchesHuggingFaceTokenizers) {
  const std::vector<fs::path> files = GoldenFiles();
  ASSERT_FALSE(files.empty())
      << "no golden file found: tests/golden/tokenizer/*.golden.json is empty. Make one with "
         "tools/goldens/make_tokenizer_goldens.py (needs Hugging Face tokenizers) and add the "
         "tokenizer.json it names to this test's data.";
  for (const fs::path& file : files) CheckGolden(file);
}

}  // namespace
}  // namespace apr
