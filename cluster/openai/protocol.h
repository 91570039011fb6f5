// The OpenAI HTTP API's JSON, as far as this runtime serves it (docs/OPENAI.md): requests
// of POST /v1/completions and /v1/chat/completions parsed and checked into plain structs,
// and the response, stream-chunk, model-list and error objects built from plain values.
// Pure functions (no I/O), so the parser is unit-tested and fuzzed on its own.
#ifndef APRUNTIME_CLUSTER_OPENAI_PROTOCOL_H_
#define APRUNTIME_CLUSTER_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "cluster/openai/chat_template.h"

namespace apr::cluster::openai {

// A request the API refuses: the HTTP status and the OpenAI error object's fields.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending field, "" when none
  std::string code;   // "model_not_found", ...; "" when none
};

// What /v1/completions and /v1/chat/completions share.
struct SamplingFields {
  std::string model;
  std::optional<int64_t> max_tokens;  // unset: the front end's default_max_tokens
  float temperature = 1.0f;           // OpenAI's default
  float top_p = 1.0f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;  // up to 4 strings; the text ends before the first match
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage
};

struct CompletionRequest {
  SamplingFields sampling;
  std::string prompt;                          // text, or ...
  std::optional<std::vector<int32_t>> tokens;  // ... token ids (prompt as an int array)
  bool echo = false;
};

struct ChatRequest {
  SamplingFields sampling;
  std::vector<ChatMessage> messages;
};

// The longest stop string accepted, and how many.
inline constexpr size_t kMaxStopStrings = 4;
inline constexpr size_t kMaxStopBytes = 256;

// Parse and check a request body. Unknown fields are ignored, as OpenAI's own server
// does for fields it does not know; fields with a meaning this runtime cannot honour
// (n > 1, logprobs, best_of > 1, tools, ...) are refused with the field named.
std::variant<CompletionRequest, ApiError> ParseCompletionRequest(std::string_view body);
std::variant<ChatRequest, ApiError> ParseChatRequest(std::string_view body);

// {"error": {...}} with the fields of `e`.
std::string ErrorBody(const ApiError& e);

// Why a generation ended, in OpenAI's words: "stop" (end-of-sequence token or a stop
// string) or "length" (max_tokens or the model's context).
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

// One whole (non-streaming) response.
std::string CompletionBody(const std::string& id, int64_t created, const std::string& model,
                           const std::string& text, const std::string& finish_reason,
                           const Usage& usage);
std::string ChatCompletionBody(const std::string& id, int64_t created, const std::string& model,
                               const std::string& text, const std::string& finish_reason,
                               const Usage& usage);

// One server-sent event's JSON (the caller writes "data: " + json + "\n\n"). A chunk with
// `finish_reason` set ends the choice; `usage` set makes the usage-only last chunk.
std::string CompletionChunk(const std::string& id, int64_t created, const std::string& model,
                            const std::string& text, const std::string* finish_reason);
std::string ChatChunk(const std::string& id, int64_t created, const std::string& model,
                      const std::string* role, const std::string& text,
                      const std::string* finish_reason);
std::string UsageChunk(const std::string& id, int64_t created, const std::string& model,
                       bool chat, const Usage& usage);

// GET /v1/models.
std::string ModelsBody(const std::string& model, int64_t created);

}  // namespace apr::cluster::openai

#endif  // APRUNTIME_CLUSTER_OPENAI_PROTOCOL_H_
