// libFuzzer entry point for what an HTTP client sends the OpenAI API: bytes parsed as a
// completions and as a chat request body (cluster/openai/protocol.h). Whatever is
// accepted must satisfy the checks the server relies on (a model name, a positive
// max_tokens, temperature in [0, 2], top_p in (0, 1], at most 4 stop strings of 1-256
// bytes, non-empty messages with known roles); accepted chat messages are then rendered
// with the fallback template, and every response builder must produce valid JSON.
// Built by tools/fuzz/run_fuzzers.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cluster/openai/chat_template.h"
#include "cluster/openai/protocol.h"
#include "cluster/openai/stop_strings.h"

namespace {

using namespace apr::cluster::openai;

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "openai_request_fuzzer: accepted, yet %s\n", what);
  std::abort();
}

void CheckSampling(const SamplingFields& f) {
  Require(!f.model.empty(), "the model is empty");
  Require(!f.max_tokens || *f.max_tokens >= 1, "max_tokens < 1");
  Require(f.temperature >= 0 && f.temperature <= 2, "temperature outside [0, 2]");
  Require(f.top_p > 0 && f.top_p <= 1, "top_p outside (0, 1]");
  Require(f.stop.size() <= kMaxStopStrings, "more than 4 stop strings");
  for (const std::string& s : f.stop) Require(!s.empty() && s.size() <= kMaxStopBytes, "bad stop");
}

void CheckJson(const std::string& s) {
  Require(!nlohmann::json::parse(s, nullptr, false).is_discarded(), "a builder's JSON is invalid");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto c = ParseCompletionRequest(body);
  if (auto* r = std::get_if<CompletionRequest>(&c)) {
    CheckSampling(r->sampling);
    Require(r->tokens.has_value() || !r->prompt.empty(), "the prompt is empty");
    StopStrings stop(r->sampling.stop);
    std::string out = stop.Push(r->prompt);
    out += stop.Flush();
    Require(out.size() <= r->prompt.size(), "stop strings made text");
    CheckJson(CompletionBody("id", 0, r->sampling.model, r->prompt, "stop", {1, 2}));
    CheckJson(CompletionChunk("id", 0, r->sampling.model, r->prompt, nullptr));
  }
  auto chat = ParseChatRequest(body);
  if (auto* r = std::get_if<ChatRequest>(&chat)) {
    CheckSampling(r->sampling);
    Require(!r->messages.empty(), "no messages");
    static const ChatTemplate* t = [] {
      auto p = ChatTemplate::Parse(
          "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>\n{% endif %}");
      return p.ok() ? new ChatTemplate(*p) : nullptr;
    }();
    Require(t != nullptr, "the fallback template does not parse");
    auto text = t->Render(r->messages, true, "<s>", "</s>");
    Require(text.ok(), "the fallback template failed on accepted messages");
    const std::string role = "assistant";
    CheckJson(ChatChunk("id", 0, r->sampling.model, &role, r->messages[0].content, nullptr));
  }
  if (auto* e = std::get_if<ApiError>(&c)) CheckJson(ErrorBody(*e));
  return 0;
}
