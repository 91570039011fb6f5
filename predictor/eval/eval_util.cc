#include "predictor/eval/eval_util.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace apr::predictor {

absl::StatusOr<std::vector<CorpusDoc>> ReadCorpusJsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read corpus file ", path));
  std::vector<CorpusDoc> docs;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", n, ": not a {\"id\", \"source\", \"text\"} JSON object"));
    }
    CorpusDoc d;
    d.text = j["text"].get<std::string>();
    if (j.contains("id") && j["id"].is_string()) d.id = j["id"].get<std::string>();
    if (j.contains("source") && j["source"].is_string()) d.source = j["source"].get<std::string>();
    docs.push_back(std::move(d));
  }
  return docs;
}

int64_t PrefillFanOut::PrefillRowsWanted() const {
  int64_t r = 0;
  for (AttentionHooks* h : hooks_) r = std::max(r, h->PrefillRowsWanted());
  return r;
}

void PrefillFanOut::ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows,
                                   int64_t num_heads, const float* probs) {
  for (AttentionHooks* h : hooks_) {
    const int64_t want = std::min(h->PrefillRowsWanted(), rows);
    if (want <= 0) continue;
    if (want == rows) {
      h->ObservePrefill(layer, prompt_len, rows, num_heads, probs);
      continue;
    }
    buf_.resize(num_heads * want * prompt_len);
    for (int64_t hd = 0; hd < num_heads; ++hd) {
      std::memcpy(&buf_[hd * want * prompt_len],
                  probs + (hd * rows + (rows - want)) * prompt_len,
                  sizeof(float) * want * prompt_len);
    }
    h->ObservePrefill(layer, prompt_len, want, num_heads, buf_.data());
  }
}

std::string PasskeyNeedle(const std::string& key) {
  return absl::StrCat("\nThe pass key is ", key, ". Remember it. ", key, " is the pass key.\n");
}
std::string PasskeyQuestion() { return "\nWhat is the pass key? The pass key is"; }
std::string PasskeyAnswer(const std::string& key) { return absl::StrCat(" ", key, "."); }

std::string FirstDigits(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && text[i] == ' ') ++i;
  std::string d;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && d.size() < 5)
    d += text[i++];
  return d;
}

}  // namespace apr::predictor
