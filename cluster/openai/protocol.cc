#include "cluster/openai/protocol.h"

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

namespace apr::cluster::openai {
namespace {

using json = nlohmann::json;

ApiError Invalid(const std::string& param, const std::string& message) {
  return ApiError{400, message, "invalid_request_error", param, ""};
}

// Fields OpenAI defines that this runtime cannot honour: refused rather than ignored, so
// that a client never gets a silently different answer. Allowed values pass.
std::optional<ApiError> RefuseUnsupported(const json& j) {
  if (j.contains("n") && !(j["n"].is_number_integer() && j["n"].get<int64_t>() == 1)) {
    return Invalid("n", "only n = 1 is supported");
  }
  if (j.contains("best_of") && !(j["best_of"].is_number_integer() && j["best_of"].get<int64_t>() == 1)) {
    return Invalid("best_of", "only best_of = 1 is supported");
  }
  for (const char* f : {"logprobs", "top_logprobs", "tools", "functions", "logit_bias", "suffix"}) {
    if (j.contains(f) && !j[f].is_null() && !(j[f].is_boolean() && !j[f].get<bool>())) {
      return Invalid(f, std::string(f) + " is not supported");
    }
  }
  for (const char* f : {"presence_penalty", "frequency_penalty"}) {
    if (j.contains(f) && !(j[f].is_number() && j[f].get<double>() == 0)) {
      return Invalid(f, std::string(f) + " is not supported (only 0)");
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ReadNumber(const json& j, const char* name, double lo, double hi,
                                   const char* range, float* out) {
  if (!j.contains(name) || j[name].is_null()) return std::nullopt;
  if (!j[name].is_number()) return Invalid(name, std::string(name) + " must be a number");
  const double v = j[name].get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return Invalid(name, std::string(name) + " must be in " + range);
  }
  *out = static_cast<float>(v);
  return std::nullopt;
}

std::optional<ApiError> ReadStop(const json& j, std::vector<std::string>* stop) {
  if (!j.contains("stop") || j["stop"].is_null()) return std::nullopt;
  const json& s = j["stop"];
  if (s.is_string()) {
    stop->push_back(s.get<std::string>());
  } else if (s.is_array() && s.size() <= kMaxStopStrings) {
    for (const json& e : s) {
      if (!e.is_string()) return Invalid("stop", "stop must be a string or a list of strings");
      stop->push_back(e.get<std::string>());
    }
  } else {
    return Invalid("stop", "stop must be a string or a list of at most 4 strings");
  }
  for (const std::string& x : *stop) {
    if (x.empty() || x.size() > kMaxStopBytes) {
      return Invalid("stop", "each stop string must have 1 to 256 bytes");
    }
  }
  return std::nullopt;
}

std::optional<ApiError> ReadSampling(const json& j, SamplingFields* f) {
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty()) {
    return Invalid("model", "model is required (GET /v1/models lists it)");
  }
  f->model = j["model"].get<std::string>();
  if (auto e = RefuseUnsupported(j)) return e;
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (!j.contains(name) || j[name].is_null()) continue;
    if (!j[name].is_number_integer() || j[name].get<int64_t>() < 1) {
      return Invalid(name, std::string(name) + " must be a positive integer");
    }
    f->max_tokens = j[name].get<int64_t>();
  }
  if (auto e = ReadNumber(j, "temperature", 0, 2, "[0, 2]", &f->temperature)) return e;
  if (auto e = ReadNumber(j, "top_p", 0, 1, "(0, 1]", &f->top_p)) return e;
  if (j.contains("top_p") && f->top_p <= 0) return Invalid("top_p", "top_p must be in (0, 1]");
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) return Invalid("seed", "seed must be an integer");
    f->seed = static_cast<uint64_t>(j["seed"].get<int64_t>());
  }
  if (auto e = ReadStop(j, &f->stop)) return e;
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) return Invalid("stream", "stream must be a boolean");
    f->stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options") && j["stream_options"].is_object()) {
    const json& so = j["stream_options"];
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean()) {
        return Invalid("stream_options.include_usage", "include_usage must be a boolean");
      }
      f->include_usage = so["include_usage"].get<bool>();
    }
  }
  return std::nullopt;
}

std::variant<json, ApiError> ParseObject(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Invalid("", "the request body is not valid JSON");
  if (!j.is_object()) return Invalid("", "the request body must be a JSON object");
  return j;
}

std::optional<ApiError> ReadPrompt(const json& j, CompletionRequest* r) {
  if (!j.contains("prompt")) return Invalid("prompt", "prompt is required");
  const json& p = j["prompt"];
  if (p.is_string()) {
    r->prompt = p.get<std::string>();
    if (r->prompt.empty()) return Invalid("prompt", "prompt is empty");
    return std::nullopt;
  }
  if (p.is_array() && p.size() == 1 && p[0].is_string()) {  // a one-element batch
    r->prompt = p[0].get<std::string>();
    return r->prompt.empty() ? std::optional(Invalid("prompt", "prompt is empty")) : std::nullopt;
  }
  if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    std::vector<int32_t> ids;
    for (const json& e : p) {
      if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
          e.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Invalid("prompt", "a token-id prompt must hold non-negative integers");
      }
      ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
    }
    r->tokens = std::move(ids);
    return std::nullopt;
  }
  return Invalid("prompt", "prompt must be a string, a list of one string or a list of token ids "
                           "(batches of several prompts are not supported)");
}

// Message content: a string, or a list of {"type": "text", "text": ...} parts.
std::optional<ApiError> ReadContent(const json& c, size_t i, std::string* out) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  if (c.is_string()) {
    *out = c.get<std::string>();
    return std::nullopt;
  }
  if (c.is_null()) return std::nullopt;
  if (!c.is_array()) return Invalid(param, "content must be a string or a list of text parts");
  for (const json& part : c) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return Invalid(param, "only text content parts are supported");
    }
    *out += part["text"].get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

std::variant<CompletionRequest, ApiError> ParseCompletionRequest(std::string_view body) {
  auto parsed = ParseObject(body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return *e;
  const json& j = std::get<json>(parsed);
  CompletionRequest r;
  if (auto e = ReadSampling(j, &r.sampling)) return *e;
  if (auto e = ReadPrompt(j, &r)) return *e;
  if (j.contains("echo") && !j["echo"].is_null()) {
    if (!j["echo"].is_boolean()) return Invalid("echo", "echo must be a boolean");
    r.echo = j["echo"].get<bool>();
  }
  return r;
}

std::variant<ChatRequest, ApiError> ParseChatRequest(std::string_view body) {
  auto parsed = ParseObject(body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return *e;
  const json& j = std::get<json>(parsed);
  ChatRequest r;
  if (auto e = ReadSampling(j, &r.sampling)) return *e;
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
    return Invalid("messages", "messages must be a non-empty list");
  }
  for (size_t i = 0; i < j["messages"].size(); ++i) {
    const json& m = j["messages"][i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return Invalid(param, "each message needs a role");
    }
    ChatMessage msg;
    msg.role = m["role"].get<std::string>();
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" &&
        msg.role != "developer") {
      return Invalid(param + ".role", "role must be system, developer, user or assistant");
    }
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for it
    if (m.contains("content")) {
      if (auto e = ReadContent(m["content"], i, &msg.content)) return *e;
    }
    r.messages.push_back(std::move(msg));
  }
  return r;
}

std::string ErrorBody(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}}.dump();
}

namespace {

json UsageJson(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json Envelope(const std::string& id, const char* object, int64_t created,
              const std::string& model) {
  return {{"id", id}, {"object", object}, {"created", created}, {"model", model}};
}

// Text from the model may end inside a UTF-8 sequence only if the tokenizer's stream
// decoder let it; replace, never throw, so one odd byte cannot kill a response.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string CompletionBody(const std::string& id, int64_t created, const std::string& model,
                           const std::string& text, const std::string& finish_reason,
                           const Usage& usage) {
  json j = Envelope(id, "text_completion", created, model);
  j["choices"] = json::array({{{"index", 0},
                               {"text", text},
                               {"logprobs", nullptr},
                               {"finish_reason", finish_reason}}});
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string ChatCompletionBody(const std::string& id, int64_t created, const std::string& model,
                               const std::string& text, const std::string& finish_reason,
                               const Usage& usage) {
  json j = Envelope(id, "chat.completion", created, model);
  j["choices"] = json::array({{{"index", 0},
                               {"message", {{"role", "assistant"}, {"content", text}}},
                               {"logprobs", nullptr},
                               {"finish_reason", finish_reason}}});
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string CompletionChunk(const std::string& id, int64_t created, const std::string& model,
                            const std::string& text, const std::string* finish_reason) {
  json j = Envelope(id, "text_completion", created, model);
  json choice = {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  if (finish_reason != nullptr) choice["finish_reason"] = *finish_reason;
  j["choices"] = json::array({choice});
  return Dump(j);
}

std::string ChatChunk(const std::string& id, int64_t created, const std::string& model,
                      const std::string* role, const std::string& text,
                      const std::string* finish_reason) {
  json j = Envelope(id, "chat.completion.chunk", created, model);
  json delta = json::object();
  if (role != nullptr) delta["role"] = *role;
  if (!text.empty() || (role == nullptr && finish_reason == nullptr)) delta["content"] = text;
  json choice = {{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  if (finish_reason != nullptr) choice["finish_reason"] = *finish_reason;
  j["choices"] = json::array({choice});
  return Dump(j);
}

std::string UsageChunk(const std::string& id, int64_t created, const std::string& model,
                       bool chat, const Usage& usage) {
  json j = Envelope(id, chat ? "chat.completion.chunk" : "text_completion", created, model);
  j["choices"] = json::array();
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string ModelsBody(const std::string& model, int64_t created) {
  json m = {{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "apruntime"}};
  return Dump(json{{"object", "list"}, {"data", json::array({m})}});
}

}  // namespace apr::cluster::openai
