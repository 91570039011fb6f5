// libFuzzer entry point for the tokenizer.json parser (runtime/tokenizer/tokenizer_json.cc):
// any bytes either fail with a status or give a tokenizer that encodes text into ids
// inside its vocabulary and decodes them without fault. Built by tools/fuzz/run_fuzzers.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  auto tok = apr::Tokenizer::FromJson(json, "fuzz/tokenizer.json");
  if (!tok.ok()) return 0;
  static const std::string kText =
      "Hello, world! def f(x):\n\treturn x ** 2  # 12345 \xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80 <s></s>";
  for (bool special : {false, true}) {
    std::vector<int32_t> ids = (*tok)->Encode(kText, special);
    for (int32_t id : ids) {
      if (id < 0 || id >= (*tok)->vocab_size()) {
        std::fprintf(stderr, "id %d outside the vocabulary of %d\n", id, (*tok)->vocab_size());
        std::abort();
      }
    }
    (void)(*tok)->Decode(ids, special);
    apr::StreamDecoder stream(**tok);
    for (int32_t id : ids) (void)stream.Push(id);
    (void)stream.Flush();
  }
  return 0;
}
