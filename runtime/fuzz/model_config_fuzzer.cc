// libFuzzer entry point for the config.json parser. Build with
// clang -fsanitize=fuzzer,address; runtime/model_config_fuzz_test.cc runs the same
// checks over a fixed corpus of mutations in every ordinary test run.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "runtime/fuzz/invariants.h"
#include "runtime/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = apr::ParseModelConfig(text, "fuzz/config.json");
  if (config.ok()) {
    const std::string why = apr::fuzz::ModelConfigViolation(*config);
    if (!why.empty()) {
      std::fprintf(stderr, "accepted an inconsistent config: %s\n", why.c_str());
      std::abort();
    }
  }
  return 0;
}
