// What must hold for anything the parsers accept, whatever the input bytes were.
// Shared by the fuzz tests (gtest) and the libFuzzer entry points.
#ifndef APRUNTIME_RUNTIME_FUZZ_INVARIANTS_H_
#define APRUNTIME_RUNTIME_FUZZ_INVARIANTS_H_

#include <string>
#include <string_view>

#include "runtime/model_config.h"
#include "runtime/safetensors.h"

namespace apr::fuzz {

// Empty when every view of `f` lies inside `bytes` (the buffer it was parsed from),
// nbytes == numel x dtype size, names are sorted and unique and no two views overlap;
// otherwise what is wrong. Reads every viewed byte, so a sanitizer sees a bad pointer.
std::string SafetensorsViolation(const SafetensorsFile& f, std::string_view bytes);

// Empty when `c` is a config the runtime can build a model from; otherwise what is wrong.
std::string ModelConfigViolation(const ModelConfig& c);

}  // namespace apr::fuzz

#endif  // APRUNTIME_RUNTIME_FUZZ_INVARIANTS_H_
