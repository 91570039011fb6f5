#include "cluster/openai/protocol.h"

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"

namespace apr::cluster::openai {
namespace {

using json = nlohmann::json;

template <typename T>
T Ok(const std::variant<T, ApiError>& v) {
  if (auto* e = std::get_if<ApiError>(&v)) ADD_FAILURE() << e->param << ": " << e->message;
  return std::holds_alternative<T>(v) ? std::get<T>(v) : T{};
}

template <typename T>
ApiError Err(const std::variant<T, ApiError>& v) {
  EXPECT_TRUE(std::holds_alternative<ApiError>(v));
  return std::holds_alternative<ApiError>(v) ? std::get<ApiError>(v) : ApiError{};
}

TEST(ParseCompletion, FieldsAndDefaults) {
  const auto r = Ok(ParseCompletionRequest(
      R"({"model": "m", "prompt": "def f(", "max_tokens": 7, "temperature": 0, "top_p": 0.5,
          "seed": 3, "stop": ["\n\n", "x"], "stream": true,
          "stream_options": {"include_usage": true}, "n": 1, "user": "ignored"})"));
  EXPECT_EQ(r.sampling.model, "m");
  EXPECT_EQ(r.prompt, "def f(");
  EXPECT_EQ(r.sampling.max_tokens, 7);
  EXPECT_EQ(r.sampling.temperature, 0);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.seed, 3u);
  EXPECT_EQ(r.sampling.stop, (std::vector<std::string>{"\n\n", "x"}));
  EXPECT_TRUE(r.sampling.stream);
  EXPECT_TRUE(r.sampling.include_usage);
  const auto d = Ok(ParseCompletionRequest(R"({"model": "m", "prompt": ["hi"]})"));
  EXPECT_EQ(d.prompt, "hi");
  EXPECT_FALSE(d.sampling.max_tokens.has_value());
  EXPECT_EQ(d.sampling.temperature, 1.0f);  // OpenAI's defaults
  EXPECT_FALSE(d.sampling.stream);
  const auto ids = Ok(ParseCompletionRequest(R"({"model": "m", "prompt": [5, 6, 7]})"));
  EXPECT_EQ(*ids.tokens, (std::vector<int32_t>{5, 6, 7}));
}

TEST(ParseCompletion, BadInputNamesTheField) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {R"({"prompt": "x"})", "model"},
      {R"({"model": 3, "prompt": "x"})", "model"},
      {R"({"model": "m"})", "prompt"},
      {R"({"model": "m", "prompt": ""})", "prompt"},
      {R"({"model": "m", "prompt": ["a", "b"]})", "prompt"},
      {R"({"model": "m", "prompt": [1, -2]})", "prompt"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 0})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": "5"})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "temperature": 3})", "temperature"},
      {R"({"model": "m", "prompt": "x", "temperature": "hot"})", "temperature"},
      {R"({"model": "m", "prompt": "x", "top_p": 0})", "top_p"},
      {R"({"model": "m", "prompt": "x", "n": 2})", "n"},
      {R"({"model": "m", "prompt": "x", "logprobs": 5})", "logprobs"},
      {R"({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop"},
      {R"({"model": "m", "prompt": "x", "stop": [""]})", "stop"},
      {R"({"model": "m", "prompt": "x", "stream": "yes"})", "stream"},
      {R"({"model": "m", "prompt": "x", "seed": 1.5})", "seed"},
      {R"({"model": "m", "prompt": "x", "presence_penalty": 1})", "presence_penalty"},
  };
  for (const Case& c : cases) {
    const ApiError e = Err(ParseCompletionRequest(c.body));
    EXPECT_EQ(e.http_status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << ": " << e.message;
    EXPECT_FALSE(e.message.empty());
  }
  for (const char* body : {"", "{", "[1]", "null", "\"s\"", "{\"model\": \"m\", \"prompt\": \"x\",}"}) {
    const ApiError e = Err(ParseCompletionRequest(body));
    EXPECT_EQ(e.http_status, 400) << body;
    EXPECT_EQ(e.param, "") << body;
  }
}

TEST(ParseChat, MessagesAndContentParts) {
  const auto r = Ok(ParseChatRequest(
      R"({"model": "m", "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null}]})"));
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "be brief");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(Err(ParseChatRequest(R"({"model": "m", "messages": []})")).param, "messages");
  EXPECT_EQ(Err(ParseChatRequest(R"({"model": "m", "messages": [{"content": "x"}]})")).param,
            "messages[0]");
  EXPECT_EQ(Err(ParseChatRequest(R"({"model": "m", "messages": [{"role": "tool", "content": "x"}]})"))
                .param,
            "messages[0].role");
  EXPECT_EQ(Err(ParseChatRequest(R"({"model": "m", "messages": [{"role": "user",
              "content": [{"type": "image_url", "image_url": {}}]}]})"))
                .param,
            "messages[0].content");
}

TEST(Bodies, HaveOpenAisShape) {
  const json c = json::parse(CompletionBody("cmpl-1", 9, "m", "hi", "length", {3, 2}));
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "hi");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(c["usage"]["total_tokens"], 5);
  const json chat = json::parse(ChatCompletionBody("chatcmpl-1", 9, "m", "yo", "stop", {1, 1}));
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "yo");
  const std::string role = "assistant", stop = "stop";
  const json first = json::parse(ChatChunk("c", 9, "m", &role, "", nullptr));
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_FALSE(first["choices"][0]["delta"].contains("content"));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json last = json::parse(ChatChunk("c", 9, "m", nullptr, "", &stop));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  const json usage = json::parse(UsageChunk("c", 9, "m", true, {4, 6}));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 6);
  const json err = json::parse(ErrorBody({404, "no such model", "invalid_request_error", "model",
                                          "model_not_found"}));
  EXPECT_EQ(err["error"]["code"], "model_not_found");
  EXPECT_EQ(err["error"]["param"], "model");
  const json models = json::parse(ModelsBody("apr-tiny", 1));
  EXPECT_EQ(models["data"][0]["id"], "apr-tiny");
  // Invalid UTF-8 from a model is replaced, not thrown.
  EXPECT_NO_THROW(json::parse(CompletionChunk("c", 9, "m", std::string("\xff", 1), nullptr)));
}

}  // namespace
}  // namespace apr::cluster::openai
