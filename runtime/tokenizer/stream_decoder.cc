// StreamDecoder (declared in tokenizer.h).
#include <string>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string StreamDecoder::Push(int32_t id) {
  // A skipped or unknown id adds nothing and is no context.
  if (!tokenizer_.IdToToken(id) || (skip_special_tokens_ && tokenizer_.IsSpecial(id))) return "";
  std::string text = tokenizer_.Decode({id}, skip_special_tokens_);
  if (context_) {
    // What `id` adds after the context token, as a whole decode would give it.
    const std::string before = tokenizer_.Decode({*context_}, skip_special_tokens_);
    const std::string both = tokenizer_.Decode({*context_, id}, skip_special_tokens_);
    if (both.compare(0, before.size(), before) == 0) text = both.substr(before.size());
  }
  context_ = id;
  pending_ += text;
  // Bytes that cannot become valid are settled now (as U+FFFD); only a character cut
  // short by the end of the buffer waits for more.
  const size_t complete = utf8::CompletePrefixLength(pending_);
  std::string out = utf8::Repair(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out = utf8::Repair(pending_);
  pending_.clear();
  return out;
}

}  // namespace apr
