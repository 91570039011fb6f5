// Checks the tokenizer against encodings made by Hugging Face tokenizers
// (tools/goldens/make_tokenizer_goldens.py): every tests/golden/tokenizer/*.golden.json,
// with the tokenizer.json each one names, must match id for id and byte for byte; and
// StreamDecoder must give the whole decode.
#include <algorithm>
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

std::vector<std::string> ReadStrings(const fs::path& path) {
  std::ifstream in(path);
  return Json::parse(in).at("strings").get<std::vector<std::string>>();
}

struct Expected {
  std::string text;
  std::vector<int32_t> ids, ids_plain;
  std::string decoded, decoded_plain, decoded_skip;
};

// A case with every key, or a compact one whose missing keys take their defaults:
// ids_no_special = ids less `prefix` (when ids start with it), decoded_no_special =
// the text, decoded_skip_special = decoded_no_special, decoded = decoded_skip_special.
Expected ExpectedOf(const Json& c, const std::string* text, const std::vector<int32_t>& prefix) {
  Expected e;
  e.text = text ? *text : c.at("text").get<std::string>();
  e.ids = c.at("ids").get<std::vector<int32_t>>();
  if (c.contains("ids_no_special")) {
    e.ids_plain = c["ids_no_special"].get<std::vector<int32_t>>();
  } else {
    const bool starts = e.ids.size() >= prefix.size() &&
                        std::equal(prefix.begin(), prefix.end(), e.ids.begin());
    e.ids_plain.assign(e.ids.begin() + (starts ? prefix.size() : 0), e.ids.end());
  }
  e.decoded_plain = c.value("decoded_no_special", e.text);
  e.decoded_skip = c.value("decoded_skip_special", e.decoded_plain);
  e.decoded = c.value("decoded", e.decoded_skip);
  return e;
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
  // Goldens with text_from_strings take each case's text from the strings file, by
  // index, and leave out values equal to their default (make_tokenizer_goldens.js).
  std::vector<std::string> texts;
  if (golden.value("text_from_strings", false)) {
    texts = ReadStrings(RepoRoot() / golden.at("strings").get<std::string>());
    ASSERT_EQ(texts.size(), cases.size()) << path;
  }
  const std::vector<int32_t> prefix = golden.value("ids_prefix", std::vector<int32_t>{});
  int mismatches = 0;
  const auto report = [&](const std::string& what) {
    if (++mismatches <= kMaxReportedMismatches) ADD_FAILURE() << what;
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Expected want = ExpectedOf(cases[i], texts.empty() ? nullptr : &texts[i], prefix);
    const std::vector<int32_t> ids = (*tokenizer)->Encode(want.text, true);
    const std::vector<int32_t> ids_plain = (*tokenizer)->Encode(want.text, false);
    if (ids != want.ids) {
      report("Encode(" + Quote(want.text) + ", true)\n  got  " + Ids(ids) + "\n  want " +
             Ids(want.ids));
    }
    if (ids_plain != want.ids_plain) {
      report("Encode(" + Quote(want.text) + ", false)\n  got  " + Ids(ids_plain) + "\n  want " +
             Ids(want.ids_plain));
    }
    const struct {
      const char* key;
      const std::vector<int32_t>& ids;
      bool skip;
      const std::string& want;
    } decodes[] = {{"decoded", want.ids, false, want.decoded},
                   {"decoded_no_special", want.ids_plain, false, want.decoded_plain},
                   {"decoded_skip_special", want.ids, true, want.decoded_skip}};
    for (const auto& d : decodes) {
      const std::string got = (*tokenizer)->DecodeText(d.ids, d.skip);
      if (got != d.want) {
        report(std::string(d.key) + " of " + Quote(want.text) + "\n  got  " + Quote(got) +
               "\n  want " + Quote(d.want));
      }
    }
    // Streaming the ids gives the whole decode (with U+FFFD where the bytes are no UTF-8).
    StreamDecoder stream(**tokenizer, /*skip_special_tokens=*/true);
    std::string streamed;
    for (int32_t id : want.ids) streamed += stream.Push(id);
    streamed += stream.Flush();
    const std::string whole = utf8::Repair((*tokenizer)->Decode(want.ids, true));
    if (streamed != whole) {
      report("stream of " + Quote(want.text) + "\n  got  " + Quote(streamed) + "\n  want " +
             Quote(whole));
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
