// libFuzzer entry point for encoding outside text with the bundled model's tokenizer
// (models/apr-tiny/tokenizer.json, or $APR_FUZZ_TOKENIZER): ids stay inside the
// vocabulary, and valid UTF-8 decodes back to exactly the text it came from (byte-level
// BPE loses nothing). Built by tools/fuzz/run_fuzzers.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/utf8.h"

namespace {

const apr::Tokenizer& Tok() {
  static const apr::Tokenizer* tok = [] {
    const char* env = std::getenv("APR_FUZZ_TOKENIZER");
    auto t = apr::Tokenizer::FromFile(env ? env : "models/apr-tiny/tokenizer.json");
    if (!t.ok()) {
      std::fprintf(stderr, "tokenize_fuzzer: %s\n", std::string(t.status().message()).c_str());
      std::exit(2);
    }
    return t->release();
  }();
  return *tok;
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (int k = 1; k < n; ++k) {
      const unsigned char d = s[i + k];
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const apr::Tokenizer& tok = Tok();
  std::vector<int32_t> ids = tok.Encode(text, /*add_special_tokens=*/false);
  for (int32_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) {
      std::fprintf(stderr, "id %d outside the vocabulary of %d\n", id, tok.vocab_size());
      std::abort();
    }
  }
  const std::string back = tok.Decode(ids, /*skip_special_tokens=*/false);
  if (ValidUtf8(text) && back != text) {
    std::fprintf(stderr, "decode(encode(text)) differs from the text (%zu vs %zu bytes)\n",
                 back.size(), text.size());
    std::abort();
  }
  return 0;
}
