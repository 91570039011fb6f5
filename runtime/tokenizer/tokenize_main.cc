// Command-line use of the tokenizer:
//   tokenize --tokenizer=T.json --text_file=F   encodes F, prints token count and speed
//   tokenize --tokenizer=T.json --strings=S.json --out=O.json
//       writes the golden format of tools/goldens/make_tokenizer_goldens.py, to diff
//       this tokenizer against a golden file case by case.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/utf8.h"

ABSL_FLAG(std::string, tokenizer, "", "path to tokenizer.json");
ABSL_FLAG(std::string, text_file, "", "file to encode and time");
ABSL_FLAG(int, repeat, 3, "timed encodes of --text_file (the best is reported)");
ABSL_FLAG(std::string, strings, "", "strings.json to encode in the golden format");
ABSL_FLAG(std::string, out, "", "output of --strings");

namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return true;
}

int TimeFile(const apr::Tokenizer& tokenizer, const std::string& path) {
  std::string text;
  if (!ReadFile(path, &text)) {
    std::cerr << path << ": cannot read\n";
    return 1;
  }
  double best = 1e30;
  std::vector<int32_t> ids;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_repeat)); ++i) {
    const auto start = std::chrono::steady_clock::now();
    ids = tokenizer.Encode(text, false);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count());
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string decoded = tokenizer.Decode(ids);
  const std::chrono::duration<double> decode_time = std::chrono::steady_clock::now() - start;
  std::printf("%s: %zu bytes -> %zu tokens; encode %.3f s (%.2f MB/s), decode %.3f s; "
              "round trip %s\n",
              path.c_str(), text.size(), ids.size(), best, text.size() / best / 1e6,
              decode_time.count(), decoded == apr::utf8::Repair(text) ? "exact" : "DIFFERS");
  return 0;
}

int WriteGoldenFormat(const apr::Tokenizer& tokenizer, const std::string& strings_path,
                      const std::string& out_path) {
  std::string json;
  if (!ReadFile(strings_path, &json)) {
    std::cerr << strings_path << ": cannot read\n";
    return 1;
  }
  const nlohmann::json strings = nlohmann::json::parse(json);  // outlives the loop
  nlohmann::json cases = nlohmann::json::array();
  for (const auto& s : strings.at("strings")) {
    const std::string text = s.get<std::string>();
    const std::vector<int32_t> ids = tokenizer.Encode(text, true);
    const std::vector<int32_t> plain = tokenizer.Encode(text, false);
    cases.push_back({{"text", text},
                     {"ids", ids},
                     {"ids_no_special", plain},
                     {"decoded", tokenizer.DecodeText(ids, false)},
                     {"decoded_no_special", tokenizer.DecodeText(plain, false)},
                     {"decoded_skip_special", tokenizer.DecodeText(ids, true)}});
  }
  std::ofstream out(out_path);
  out << nlohmann::json{{"tokenizer", absl::GetFlag(FLAGS_tokenizer)},
                        {"strings", strings_path},
                        {"cases", cases}}
             .dump(1)
      << "\n";
  return out ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto tokenizer = apr::Tokenizer::FromFile(absl::GetFlag(FLAGS_tokenizer));
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 1;
  }
  if (!absl::GetFlag(FLAGS_text_file).empty()) {
    return TimeFile(**tokenizer, absl::GetFlag(FLAGS_text_file));
  }
  if (!absl::GetFlag(FLAGS_strings).empty() && !absl::GetFlag(FLAGS_out).empty()) {
    return WriteGoldenFormat(**tokenizer, absl::GetFlag(FLAGS_strings), absl::GetFlag(FLAGS_out));
  }
  std::cerr << "give --text_file, or --strings and --out\n";
  return 2;
}
