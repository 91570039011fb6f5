#include "runtime/tokenizer/post_processor.h"

namespace apr {

std::vector<int32_t> PostProcessor::Apply(std::vector<int32_t> ids,
                                          bool add_special_tokens) const {
  if (!single_) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const TemplatePiece& piece : *single_) {
    if (piece.is_sequence) {
      out.insert(out.end(), ids.begin(), ids.end());
    } else if (add_special_tokens) {
      out.insert(out.end(), piece.ids.begin(), piece.ids.end());
    }
  }
  return out;
}

std::vector<int32_t> PostProcessor::TemplateIds() const {
  std::vector<int32_t> ids;
  if (!single_) return ids;
  for (const TemplatePiece& piece : *single_) ids.insert(ids.end(), piece.ids.begin(), piece.ids.end());
  return ids;
}

}  // namespace apr
