// Reads the `normalizer` and `decoder` sections of tokenizer.json and the options that
// the Metaspace pre-tokenizer and decoder share; rejects the rest by name.
#ifndef APRUNTIME_RUNTIME_TOKENIZER_PIPELINE_JSON_H_
#define APRUNTIME_RUNTIME_TOKENIZER_PIPELINE_JSON_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/decoder.h"
#include "runtime/tokenizer/normalizer.h"
#include "runtime/tokenizer/pre_tokenizer.h"

namespace apr {

// Errors say "unsupported normalizer: Lowercase" and the like; the caller adds the file.
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& j);
absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const nlohmann::json& j);

struct MetaspaceOptions {
  std::string replacement;  // one character
  PrependScheme prepend = PrependScheme::kAlways;
  bool split = true;
};
// As Hugging Face reads them: prepend_scheme, else the legacy add_prefix_space
// (false means "never"); split defaults to true.
absl::StatusOr<MetaspaceOptions> ParseMetaspace(const nlohmann::json& j);

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_TOKENIZER_PIPELINE_JSON_H_
