// Chat templates: the subset of Jinja2 that the `chat_template` of a Hugging Face
// tokenizer_config.json uses for Llama 3/3.1/3.2, Mistral (v0.1-v0.3 instruct), Qwen2/2.5
// and Qwen3, rendered the way transformers renders them (trim_blocks, lstrip_blocks, no
// autoescape, one trailing newline of the source dropped). No Debian package has a C++
// Jinja engine, so this one is hand-written and small; whatever it does not support is
// an error naming the construct and where it is, never a silently different prompt.
//
// Supported: {{ }}, {% if/elif/else/endif %}, {% for x in ... %} with loop.index0/index/
// first/last/length/revindex/revindex0, {% set x = ... %}, {% set ns.attr = ... %},
// comments, whitespace control (-); literals (string, int, bool, none, list), names,
// attributes, subscripts, slices, + - % ~, comparisons, and/or/not, in/not in, a if c
// else b; tests defined, undefined, none, string, true, false, mapping, iterable; filters
// trim, length, string, tojson(indent=); string methods strip, lstrip, rstrip,
// startswith, endswith, split; functions raise_exception(msg), namespace(k=v, ...).
#ifndef APRUNTIME_CLUSTER_OPENAI_CHAT_TEMPLATE_H_
#define APRUNTIME_CLUSTER_OPENAI_CHAT_TEMPLATE_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace apr::cluster::openai {

struct ChatMessage {
  std::string role;
  std::string content;
};

namespace chat_template_internal {
struct Node;
}  // namespace chat_template_internal

// Parses once; Render is const and thread-safe (each call keeps its own variables).
class ChatTemplate {
 public:
  // Errors (InvalidArgumentError) read "chat template LINE:COLUMN: what", naming the
  // construct that is not supported or the token that was not expected.
  static absl::StatusOr<ChatTemplate> Parse(std::string_view source);

  // The template sees messages (a list of {role, content}), add_generation_prompt,
  // bos_token, eos_token and the `extra` strings (e.g. date_string for Llama 3.1; the
  // four names above win over an extra of the same name). raise_exception(msg) in the
  // template returns InvalidArgumentError(msg); other render errors name line:column.
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt, const std::string& bos_token,
                                     const std::string& eos_token,
                                     const std::map<std::string, std::string>& extra = {}) const;

 private:
  explicit ChatTemplate(std::shared_ptr<const std::vector<chat_template_internal::Node>> body)
      : body_(std::move(body)) {}

  std::shared_ptr<const std::vector<chat_template_internal::Node>> body_;
};

// What a tokenizer_config.json says about chat formatting.
struct TokenizerChatConfig {
  std::string chat_template;
  std::string bos_token;  // "" when the config has none
  std::string eos_token;
};

// Reads "chat_template" (a string, or a list of {name, template} of which the one named
// "default" is used) and bos_token / eos_token (strings or {"content": ...} objects).
// NotFound when there is no chat template; InvalidArgument for malformed JSON or fields.
absl::StatusOr<TokenizerChatConfig> ReadTokenizerChatConfig(std::string_view tokenizer_config_json);

}  // namespace apr::cluster::openai

#endif  // APRUNTIME_CLUSTER_OPENAI_CHAT_TEMPLATE_H_
