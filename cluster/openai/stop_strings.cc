#include "cluster/openai/stop_strings.h"

#include <algorithm>

namespace apr::cluster::openai {

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string& s : stops_) hold_ = std::max(hold_, s.empty() ? 0 : s.size() - 1);
}

std::string StopStrings::Push(const std::string& chunk) {
  if (stopped_) return "";
  pending_ += chunk;
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    if (!s.empty()) first = std::min(first, pending_.find(s));
  }
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  if (pending_.size() <= hold_) return "";
  size_t cut = pending_.size() - hold_;
  // Never split a UTF-8 character: back up to the start of the one at `cut`.
  while (cut > 0 && (static_cast<unsigned char>(pending_[cut]) & 0xC0) == 0x80) --cut;
  std::string out = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return out;
}

std::string StopStrings::Flush() {
  if (stopped_) return "";
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace apr::cluster::openai
