// libFuzzer entry point for the safetensors header parser. Build with
// clang -fsanitize=fuzzer,address; runtime/safetensors_fuzz_test.cc runs the same
// checks over a fixed corpus of mutations in every ordinary test run.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "runtime/fuzz/invariants.h"
#include "runtime/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto file = apr::SafetensorsFile::FromBytes(bytes, "fuzz.safetensors");
  if (file.ok()) {
    const std::string why = apr::fuzz::SafetensorsViolation(**file, bytes);
    if (!why.empty()) {
      std::fprintf(stderr, "accepted an inconsistent file: %s\n", why.c_str());
      std::abort();
    }
  }
  return 0;
}
