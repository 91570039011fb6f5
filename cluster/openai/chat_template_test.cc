// The real chat templates of testdata/ rendered against prompts written by hand from
// Jinja's semantics (as transformers configures it), the subset's corners, its errors,
// tokenizer_config.json reading, and random templates that must never crash.
#include "cluster/openai/chat_template.h"

#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::cluster::openai {
namespace {

using ::testing::HasSubstr;

constexpr char kBos[] = "<|begin_of_text|>";
constexpr char kEos[] = "<|eot_id|>";

// system + user + assistant + user; the assistant turn has space around it, which some
// templates trim and others keep.
const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant."},
    {"user", "What is 2+2?"},
    {"assistant", " 2+2 equals 4.\n"},
    {"user", "And 3+3?"},
};

std::string ReadTestdata(const std::string& name) {
  std::ifstream file("cluster/openai/testdata/" + name);
  EXPECT_TRUE(file.good()) << name;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

absl::StatusOr<std::string> RenderFile(const std::string& name,
                                       const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const std::string& bos,
                                       const std::string& eos,
                                       const std::map<std::string, std::string>& extra = {}) {
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Parse(ReadTestdata(name));
  if (!parsed.ok()) return parsed.status();
  return parsed->Render(messages, add_generation_prompt, bos, eos, extra);
}

// Renders an inline template with no messages and no special tokens.
absl::StatusOr<std::string> RenderText(std::string_view source,
                                       const std::vector<ChatMessage>& messages = {}) {
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Parse(source);
  if (!parsed.ok()) return parsed.status();
  return parsed->Render(messages, /*add_generation_prompt=*/false, "<s>", "</s>");
}

std::string ParseError(std::string_view source) {
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Parse(source);
  EXPECT_FALSE(parsed.ok()) << source;
  if (!parsed.ok()) {
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  }
  return parsed.ok() ? "" : std::string(parsed.status().message());
}

std::string RenderError(std::string_view source, const std::vector<ChatMessage>& messages = {}) {
  absl::StatusOr<std::string> rendered = RenderText(source, messages);
  EXPECT_FALSE(rendered.ok()) << source << " rendered " << rendered.value_or("");
  if (!rendered.ok()) {
    EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
  }
  return rendered.ok() ? "" : std::string(rendered.status().message());
}

// ---- The real templates ----

constexpr char kLlama3Turns[] =
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n2+2 equals 4.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>";
constexpr char kLlama3Prompt[] = "<|start_header_id|>assistant<|end_header_id|>\n\n";

TEST(ChatTemplateTest, Llama3) {
  const std::string expected = std::string(kBos) +
                               "<|start_header_id|>system<|end_header_id|>\n\n"
                               "You are a helpful assistant.<|eot_id|>" +
                               kLlama3Turns;
  EXPECT_EQ(RenderFile("llama3.jinja", kConversation, false, kBos, kEos).value(), expected);
  EXPECT_EQ(RenderFile("llama3.jinja", kConversation, true, kBos, kEos).value(),
            expected + kLlama3Prompt);
}

std::string Llama31System(const std::string& date, const std::string& system) {
  return std::string(kBos) + "<|start_header_id|>system<|end_header_id|>\n\n" +
         "Cutting Knowledge Date: December 2023\nToday Date: " + date + "\n\n" + system +
         "<|eot_id|>";
}

TEST(ChatTemplateTest, Llama31) {
  const std::string expected =
      Llama31System("26 Jul 2024", "You are a helpful assistant.") + kLlama3Turns;
  EXPECT_EQ(RenderFile("llama3_1.jinja", kConversation, false, kBos, kEos).value(), expected);
  EXPECT_EQ(RenderFile("llama3_1.jinja", kConversation, true, kBos, kEos).value(),
            expected + kLlama3Prompt);
}

TEST(ChatTemplateTest, Llama31DateStringAndNoSystemMessage) {
  EXPECT_EQ(RenderFile("llama3_1.jinja", {{"user", " Hi "}}, true, kBos, kEos,
                       {{"date_string", "01 Jan 2025"}})
                .value(),
            Llama31System("01 Jan 2025", "") +
                "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" + kLlama3Prompt);
}

// A tool result's string content goes through tojson (strings are iterable).
TEST(ChatTemplateTest, Llama31ToolResult) {
  EXPECT_EQ(
      RenderFile("llama3_1.jinja", {{"user", "Weather?"}, {"tool", "22 \"C\""}}, false, kBos, kEos)
          .value(),
      Llama31System("26 Jul 2024", "") +
          "<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|>"
          "<|start_header_id|>ipython<|end_header_id|>\n\n\"22 \\\"C\\\"\"<|eot_id|>");
}

TEST(ChatTemplateTest, Llama32WithoutStrftimeNowUsesDateString) {
  const std::string expected =
      Llama31System("26 Jul 2024", "You are a helpful assistant.") + kLlama3Turns;
  EXPECT_EQ(RenderFile("llama3_2.jinja", kConversation, true, kBos, kEos).value(),
            expected + kLlama3Prompt);
  EXPECT_EQ(RenderFile("llama3_2.jinja", kConversation, false, kBos, kEos,
                       {{"date_string", "02 Feb 2025"}})
                .value(),
            Llama31System("02 Feb 2025", "You are a helpful assistant.") + kLlama3Turns);
}

TEST(ChatTemplateTest, MistralV1) {
  const std::vector<ChatMessage> turns(kConversation.begin() + 1, kConversation.end());
  const std::string expected =
      "<s>[INST] What is 2+2? [/INST] 2+2 equals 4.\n</s>[INST] And 3+3? [/INST]";
  EXPECT_EQ(RenderFile("mistral_v1.jinja", turns, false, "<s>", "</s>").value(), expected);
  // The template has no generation prompt: [/INST] already asks for the answer.
  EXPECT_EQ(RenderFile("mistral_v1.jinja", turns, true, "<s>", "</s>").value(), expected);
}

TEST(ChatTemplateTest, MistralV1RejectsSystemMessageThroughRaiseException) {
  absl::StatusOr<std::string> rendered =
      RenderFile("mistral_v1.jinja", kConversation, true, "<s>", "</s>");
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rendered.status().message(),
            "Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplateTest, MistralV3PutsSystemMessageIntoLastUserTurn) {
  const std::string expected =
      "<s>[INST] What is 2+2?[/INST] 2+2 equals 4.</s>"
      "[INST] You are a helpful assistant.\n\nAnd 3+3?[/INST]";
  EXPECT_EQ(RenderFile("mistral_v3.jinja", kConversation, false, "<s>", "</s>").value(), expected);
  EXPECT_EQ(RenderFile("mistral_v3.jinja", kConversation, true, "<s>", "</s>").value(), expected);
}

TEST(ChatTemplateTest, MistralV3RaisesOnRoleOrderAndToolResultWithoutId) {
  absl::StatusOr<std::string> twice_user =
      RenderFile("mistral_v3.jinja", {{"user", "a"}, {"user", "b"}}, true, "<s>", "</s>");
  EXPECT_EQ(twice_user.status().message(),
            "After the optional system message, conversation roles must alternate "
            "user/assistant/user/assistant/...");
  absl::StatusOr<std::string> tool =
      RenderFile("mistral_v3.jinja", {{"user", "a"}, {"tool", "b"}}, true, "<s>", "</s>");
  EXPECT_EQ(tool.status().message(), "Tool call IDs should be alphanumeric strings with length 9!");
  absl::StatusOr<std::string> other =
      RenderFile("mistral_v3.jinja", {{"user", "a"}, {"critic", "b"}}, true, "<s>", "</s>");
  EXPECT_THAT(other.status().message(), HasSubstr("Only user and assistant roles"));
}

constexpr char kQwenTurns[] =
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n 2+2 equals 4.\n<|im_end|>\n"
    "<|im_start|>user\nAnd 3+3?<|im_end|>\n";
constexpr char kQwenPrompt[] = "<|im_start|>assistant\n";

TEST(ChatTemplateTest, Qwen2) {
  for (const char* file : {"qwen2.jinja", "qwen2_5.jinja", "qwen3.jinja"}) {
    SCOPED_TRACE(file);
    EXPECT_EQ(RenderFile(file, kConversation, false, "", "<|im_end|>").value(), kQwenTurns);
    EXPECT_EQ(RenderFile(file, kConversation, true, "", "<|im_end|>").value(),
              std::string(kQwenTurns) + kQwenPrompt);
  }
}

TEST(ChatTemplateTest, QwenDefaultSystemMessages) {
  EXPECT_EQ(RenderFile("qwen2.jinja", {{"user", "Hi"}}, true, "", "").value(),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(RenderFile("qwen2_5.jinja", {{"user", "Hi"}}, true, "", "").value(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(RenderFile("qwen3.jinja", {{"user", "Hi"}}, true, "", "").value(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// Consecutive tool results share one user turn (messages[loop.index0 - 1] and + 1).
TEST(ChatTemplateTest, Qwen25GroupsToolResults) {
  const std::vector<ChatMessage> messages = {
      {"user", "Weather?"}, {"assistant", "Let me check."}, {"tool", "22 C"}, {"tool", "Sunny"}};
  EXPECT_EQ(RenderFile("qwen2_5.jinja", messages, false, "", "").value(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nWeather?<|im_end|>\n"
            "<|im_start|>assistant\nLet me check.<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n22 C\n</tool_response>\n"
            "<tool_response>\nSunny\n</tool_response><|im_end|>\n");
}

TEST(ChatTemplateTest, Qwen3DropsEarlierReasoningAndKeepsTheLast) {
  const ChatMessage thought = {"assistant", "<think>\nGreet back.\n</think>\n\nHello!"};
  EXPECT_EQ(
      RenderFile("qwen3.jinja", {{"user", "Hi"}, thought, {"user", "Bye"}}, false, "", "").value(),
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
      "<|im_start|>user\nBye<|im_end|>\n");
  EXPECT_EQ(RenderFile("qwen3.jinja", {{"user", "Hi"}, thought}, false, "", "").value(),
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nGreet back.\n</think>\n\nHello!<|im_end|>\n");
  EXPECT_EQ(
      RenderFile("qwen3.jinja", {{"user", "Hi"}, {"assistant", "Hello!"}}, false, "", "").value(),
      "<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n");
}

TEST(ChatTemplateTest, ParsedTemplateRendersFromManyThreads) {
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Parse(ReadTestdata("qwen3.jinja"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::string expected = std::string(kQwenTurns) + kQwenPrompt;
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        if (parsed->Render(kConversation, true, "", "").value_or("") != expected) ++mismatches[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ::testing::Each(0));
}

// ---- Whitespace control ----

TEST(ChatTemplateTest, WhitespaceControl) {
  EXPECT_EQ(RenderText("a  {{- 'b' -}}  \n c").value(), "abc");
  EXPECT_EQ(RenderText("a  {{ 'b' }}  c").value(), "a  b  c");
  // trim_blocks: the newline after a block tag goes, not the one after }}.
  EXPECT_EQ(RenderText("{% if true %}\nx\n{% endif %}\ny").value(), "x\ny");
  EXPECT_EQ(RenderText("{{ 'x' }}\ny").value(), "x\ny");
  // lstrip_blocks: indentation before a block tag on its own line goes, not before {{.
  EXPECT_EQ(RenderText("  {% if true %}\n  x\n  {% endif %}\n").value(), "  x\n");
  EXPECT_EQ(RenderText("a  {% if true %}b{% endif %}").value(), "a  b");
  EXPECT_EQ(RenderText("  {{ 'x' }}").value(), "  x");
  EXPECT_EQ(RenderText("  {%+ if true %}x{% endif %}").value(), "  x");
  EXPECT_EQ(RenderText("{% if true +%}\nx{% endif %}").value(), "\nx");
  EXPECT_EQ(RenderText("x\n  {%- if true -%}\n\n y {%- endif %}").value(), "xy");
  // Comments strip like block tags.
  EXPECT_EQ(RenderText("a {# note #} b").value(), "a  b");
  EXPECT_EQ(RenderText("a {#- note -#} b").value(), "ab");
  EXPECT_EQ(RenderText("  {# note #}\nx").value(), "x");
  // One trailing newline of the source is dropped, as Jinja does; \r\n reads as \n.
  EXPECT_EQ(RenderText("x\n").value(), "x");
  EXPECT_EQ(RenderText("x\n\n").value(), "x\n");
  EXPECT_EQ(RenderText("x\r\ny").value(), "x\ny");
}

// ---- Expressions and statements ----

TEST(ChatTemplateTest, LoopVariables) {
  EXPECT_EQ(RenderText("{% for x in ['a', 'b', 'c'] %}{{ loop.index0 }}{{ loop.index }}"
                       "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ x }};{% endfor %}")
                .value(),
            "01TrueFalse3a;12FalseFalse3b;23FalseTrue3c;");
  EXPECT_EQ(
      RenderText("{% for x in [] %}x{% endfor %}{% for c in 'añ' %}[{{ c }}]{% endfor %}").value(),
      "[a][ñ]");
}

TEST(ChatTemplateTest, SetScopesAndNamespaces) {
  // A set inside a loop ends with the loop; a namespace carries the value out.
  EXPECT_EQ(RenderText("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{% endfor %}{{ x }}")
                .value(),
            "1");
  EXPECT_EQ(RenderText("{% set ns = namespace(found=false, n=0) %}{% for i in [1, 2, 3] %}"
                       "{% if i == 2 %}{% set ns.found = true %}{% endif %}"
                       "{% set ns.n = ns.n + i %}{% endfor %}{{ ns.found }} {{ ns.n }}")
                .value(),
            "True 6");
  EXPECT_EQ(RenderText("{% set ns = namespace() %}{% set ns.index = 0 %}{{ ns.index }}").value(),
            "0");
  EXPECT_EQ(RenderText("{% if true %}{% set y = 'in if' %}{% endif %}{{ y }}").value(), "in if");
  // A namespace holding itself prints (cut short) and is freed (the asan config checks).
  EXPECT_THAT(RenderText("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").value(),
              ::testing::StartsWith("<Namespace {'me': <Namespace {'me': "));
}

TEST(ChatTemplateTest, SubscriptsAndSlices) {
  const std::vector<ChatMessage> messages = {{"system", "S"}, {"user", "U"}, {"assistant", "A"}};
  EXPECT_EQ(RenderText("{{ messages[0]['role'] }} {{ messages[-1].content }} "
                       "{{ messages[1:] | length }} {{ messages[5] is defined }}",
                       messages)
                .value(),
            "system A 2 False");
  EXPECT_EQ(
      RenderText("{% for m in messages[::-1] %}{{ m.role[0] }}{% endfor %}", messages).value(),
      "aus");
  EXPECT_EQ(RenderText("{{ [1, 2, 3, 4, 5][1:4:2] }} {{ [1, 2, 3][:-1] }} {{ 'abcdef'[-3:] }} "
                       "{{ [1, 2, 3][-100:100] }} {{ [1, 2, 3][::-2] }}")
                .value(),
            "[2, 4] [1, 2] def [1, 2, 3] [3, 1]");
}

TEST(ChatTemplateTest, Operators) {
  EXPECT_EQ(RenderText("{{ 1 + 2 - 4 }} {{ 'a' + 'b' }} {{ 'n' ~ 1 ~ none ~ true }} {{ -7 % 3 }} "
                       "{{ 7 % -3 }} {{ [1] + [2] }}")
                .value(),
            "-1 ab n1NoneTrue 2 -2 [1, 2]");
  EXPECT_EQ(RenderText("{{ 1 < 2 }} {{ 'b' >= 'a' }} {{ 1 < 2 < 2 }} {{ 1 == true }} "
                       "{{ [1, 'a'] == [1, 'a'] }} {{ 'a' != 'a' }}")
                .value(),
            "True True False True True False");
  EXPECT_EQ(RenderText("{{ 'ell' in 'hello' }} {{ 2 not in [1, 3] }} {{ 'role' in messages[0] }} "
                       "{{ 'x' in undefined_thing }}",
                       {{"user", "u"}})
                .value(),
            "True True True False");
  // and/or return the deciding operand, as in Python.
  EXPECT_EQ(RenderText("{{ '' or 'fallback' }} {{ 'a' and 'b' }} {{ not '' }} "
                       "{{ 'y' if 1 > 2 else 'n' }} [{{ 'y' if false }}]")
                .value(),
            "fallback b True n []");
}

TEST(ChatTemplateTest, TestsFiltersAndMethods) {
  EXPECT_EQ(RenderText("{{ x is defined }} {{ x is not defined }} {{ none is none }} "
                       "{{ 'a' is string }} {{ 1 is string }} {{ false is false }} "
                       "{{ 0 is false }} {{ messages is iterable }} {{ messages[0] is mapping }}",
                       {{"user", "u"}})
                .value(),
            "False True True True False True False True True");
  EXPECT_EQ(RenderText("[{{ '  a b \n' | trim }}] {{ 'añb' | length }} {{ [1, 2] | length }} "
                       "{{ 5 | string + '!' }} {{ 'xxaxx' | trim('x') }}")
                .value(),
            "[a b] 3 2 5! a");
  EXPECT_EQ(RenderText("[{{ ' a '.strip() }}|{{ ' a '.lstrip() }}|{{ ' a '.rstrip() }}|"
                       "{{ '\\n\\na\\n'.strip('\\n') }}|{{ 'xya'.lstrip('yx') }}] "
                       "{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith('bc') }} "
                       "{{ 'abc'.endswith('abcd') }} {{ 'a</t>b</t>c'.split('</t>') }} "
                       "{{ ' a  b '.split() }} {{ 'a</think>b'.split('</think>')[-1] }}")
                .value(),
            "[a|a | a|a|a] True True False ['a', 'b', 'c'] ['a', 'b'] b");
}

TEST(ChatTemplateTest, ToJson) {
  const std::vector<ChatMessage> messages = {{"user", "say \"hi\"\n"}};
  EXPECT_EQ(RenderText("{{ messages | tojson }}", messages).value(),
            "[{\"role\": \"user\", \"content\": \"say \\\"hi\\\"\\n\"}]");
  EXPECT_EQ(RenderText("{{ [1, [true, none], 'é'] | tojson(indent=2) }}").value(),
            "[\n  1,\n  [\n    true,\n    null\n  ],\n  \"é\"\n]");
  EXPECT_EQ(RenderText("{{ [] | tojson(indent=2) }} {{ 'x' | tojson }}").value(), "[] \"x\"");
}

TEST(ChatTemplateTest, StringLiterals) {
  EXPECT_EQ(RenderText(R"({{ 'it\'s' }} {{ "a\tb" }} {{ '\x41\u00e9\\' }} {{ 'a' "b" }})").value(),
            "it's a\tb Aé\\ ab");
  EXPECT_EQ(RenderText("{{ '%}' }}{{ \"}}\" }}").value(), "%}}}");
}

TEST(ChatTemplateTest, PrintsValuesAsPython) {
  EXPECT_EQ(RenderText("{{ none }} {{ True }} {{ [1, 'a', none, false] }} {{ messages[0] }} "
                       "[{{ undefined_thing }}]",
                       {{"user", "it's"}})
                .value(),
            "None True [1, 'a', None, False] {'role': 'user', 'content': \"it's\"} []");
}

TEST(ChatTemplateTest, ExtraVariablesAndTheirPrecedence) {
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Parse("{{ who }} {{ bos_token }}");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->Render({}, false, "<s>", "", {{"who", "me"}, {"bos_token", "x"}}).value(),
            "me <s>");
}

// ---- Errors ----

TEST(ChatTemplateTest, RaiseExceptionReturnsTheMessage) {
  absl::StatusOr<std::string> rendered = RenderText(
      "{% if messages | length == 0 %}{{ raise_exception('no ' ~ 'messages') }}{% endif %}");
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rendered.status().message(), "no messages");
}

TEST(ChatTemplateTest, ParseErrorsNameLineColumnAndConstruct) {
  EXPECT_EQ(ParseError("Hello\n{{ name | upper }}"),
            "chat template 2:11: filter 'upper' is not supported");
  EXPECT_EQ(ParseError("{% macro m() %}{% endmacro %}"),
            "chat template 1:1: tag 'macro' is not supported");
  EXPECT_EQ(ParseError("x\n  {% if a is odd %}{% endif %}"),
            "chat template 2:14: test 'odd' is not supported");
  EXPECT_EQ(ParseError("{{ x.upper() }}"), "chat template 1:6: method 'upper' is not supported");
  EXPECT_EQ(ParseError("\n\n{% if true %}x"),
            "chat template 3:1: '{% if %}' is never closed with '{% endif %}'");
  EXPECT_EQ(ParseError("{% endfor %}"), "chat template 1:1: unexpected '{% endfor %}'");
  EXPECT_EQ(ParseError("{% for x in y %}{% else %}{% endfor %}"),
            "chat template 1:17: '{% else %}' in a for loop is not supported");
  EXPECT_EQ(ParseError("{% for k, v in d %}{% endfor %}"),
            "chat template 1:9: unpacking several loop variables is not supported");
  EXPECT_EQ(ParseError("{% for x in y if x %}{% endfor %}"),
            "chat template 1:15: '{% for ... if %}' filtering is not supported");
  EXPECT_EQ(ParseError("{{ 2 * 3 }}"), "chat template 1:6: operator '*' is not supported");
  EXPECT_EQ(ParseError("{{ 1.5 }}"), "chat template 1:4: float literals are not supported");
  EXPECT_EQ(ParseError("{{ {'a': 1} }}"), "chat template 1:4: dict literals are not supported");
  EXPECT_EQ(ParseError("{{ x | tojson(sort_keys=true) }}"),
            "chat template 1:8: filter 'tojson' has no supported argument 'sort_keys'");
  EXPECT_EQ(ParseError("{{ x | length(1) }}"),
            "chat template 1:8: filter 'length' takes 0 positional argument(s), got 1");
  EXPECT_EQ(ParseError("{{ x is defined(1) }}"),
            "chat template 1:16: test 'defined' takes no argument");
  EXPECT_EQ(ParseError("{{ 'abc }}"), "chat template 1:4: unterminated string literal");
  EXPECT_EQ(ParseError("a {{ x "), "chat template 1:3: unclosed tag '{{': no '}}' follows");
  EXPECT_EQ(ParseError("{# never closed"), "chat template 1:1: unclosed comment '{#'");
  EXPECT_EQ(ParseError("{{ x ; }}"), "chat template 1:6: unexpected character ';'");
  EXPECT_EQ(ParseError("{{ }}"), "chat template 1:4: expected an expression but found '}}'");
  EXPECT_EQ(ParseError("{% set x %}{% endset %}"),
            "chat template 1:1: block assignments '{% set x %}...{% endset %}' are not supported");
  EXPECT_THAT(ParseError("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}"),
              HasSubstr("nested too deeply"));
  EXPECT_THAT(ParseError([] {
                std::string deep;
                for (int i = 0; i < 500; ++i) deep += "{% if true %}";
                return deep;
              }()),
              HasSubstr("nested too deeply"));
}

TEST(ChatTemplateTest, RenderErrorsNameLineColumn) {
  EXPECT_EQ(RenderError("{{ strftime_now('%d') }}"),
            "chat template 1:4: function 'strftime_now' is not supported");
  EXPECT_EQ(RenderError("\n{{ a.b }}"), "chat template 2:6: cannot read 'b': 'a' is undefined");
  EXPECT_EQ(RenderError("{{ x + 1 }}"), "chat template 1:6: 'x' is undefined");
  EXPECT_EQ(RenderError("{{ 'a' + 1 }}"),
            "chat template 1:8: unsupported operand types for +: string and int");
  EXPECT_EQ(RenderError("{{ 1 < 'a' }}"), "chat template 1:4: cannot order int and string with <");
  EXPECT_EQ(RenderError("{% set x = 1 %}{% set x.y = 2 %}"),
            "chat template 1:16: cannot set attribute 'y' of 'x': it is not a namespace()");
  EXPECT_EQ(RenderError("{% for x in 5 %}{% endfor %}"),
            "chat template 1:13: cannot iterate over int");
  EXPECT_EQ(RenderError("{{ 'a'.split('') }}"),
            "chat template 1:8: split() with an empty separator");
  EXPECT_EQ(RenderError("{{ 1 % 0 }}"), "chat template 1:6: modulo by zero");
  EXPECT_EQ(RenderError("{{ [1][::0] }}"), "chat template 1:7: slice step cannot be zero");
  EXPECT_EQ(RenderError("{{ 9223372036854775807 + 1 }}"), "chat template 1:24: integer overflow");
}

// ---- tokenizer_config.json ----

TEST(ReadTokenizerChatConfigTest, StringTemplateAndAddedTokenObjects) {
  absl::StatusOr<TokenizerChatConfig> config = ReadTokenizerChatConfig(R"({
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>",
    "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"
  })");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->bos_token, "<s>");
  EXPECT_EQ(config->eos_token, "</s>");
  EXPECT_EQ(config->chat_template,
            "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
}

TEST(ReadTokenizerChatConfigTest, ListTemplateUsesDefault) {
  absl::StatusOr<TokenizerChatConfig> config = ReadTokenizerChatConfig(R"({
    "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
    "eos_token": null
  })");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->chat_template, "D");
  EXPECT_EQ(config->bos_token, "");
  EXPECT_EQ(config->eos_token, "");
}

TEST(ReadTokenizerChatConfigTest, MissingTemplateIsNotFound) {
  EXPECT_EQ(ReadTokenizerChatConfig(R"({"bos_token": "<s>"})").status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<TokenizerChatConfig> no_default =
      ReadTokenizerChatConfig(R"({"chat_template": [{"name": "rag", "template": "R"}]})");
  EXPECT_EQ(no_default.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(no_default.status().message(), HasSubstr("has: rag"));
}

TEST(ReadTokenizerChatConfigTest, MalformedInputIsInvalidArgument) {
  for (const char* json : {"{", "[]", R"({"chat_template": 5})", R"({"chat_template": [5]})",
                           R"({"chat_template": "x", "bos_token": 1})"}) {
    EXPECT_EQ(ReadTokenizerChatConfig(json).status().code(), absl::StatusCode::kInvalidArgument)
        << json;
  }
}

TEST(ReadTokenizerChatConfigTest, EveryTestdataTemplateParses) {
  for (const char* file : {"llama3.jinja", "llama3_1.jinja", "llama3_2.jinja", "mistral_v1.jinja",
                           "mistral_v3.jinja", "qwen2.jinja", "qwen2_5.jinja", "qwen3.jinja"}) {
    EXPECT_TRUE(ChatTemplate::Parse(ReadTestdata(file)).ok()) << file;
  }
}

// ---- Random templates: errors allowed, crashes not ----

// A template of `pieces` drawn from the grammar's tokens and tags, valid or not.
std::string RandomTemplate(std::mt19937& rng) {
  // clang-format off
  static const std::vector<std::string> kPieces = {
      "{{ ", " }}", "{%- ", " -%}", "{% ", " %}", "{# c #}", "if ", "elif ", "else", "endif",
      "for ", " in ", "endfor", "set ", " = ", "x", "ns", "ns.a", "messages", "message",
      "loop.index0", "loop.last", "m.role", "m['content']", "messages[0]", "messages[1:]",
      "messages[::-1]", "[1, 'a']", "'s'", "\"t\"", "0", "-1", "true", "none", " + ", " - ",
      " ~ ", " % ", " == ", " != ", " < ", " and ", " or ", "not ", " is defined", " is none",
      " is string", " if ", " else ", " | trim", " | length", " | tojson", " | string",
      ".strip()", ".split('a')", ".startswith('x')", "(", ")", "[", "]", ",", ":",
      "namespace(a=1)", "raise_exception('r')", "\n", "  ", "text", "{% for m in messages %}",
      "{% endfor %}", "{% if x %}", "{% endif %}", "{% set ns = namespace(a=0) %}",
      "{% set ns.a = ns.a + 1 %}", "{{ m.content }}"};
  // clang-format on
  std::uniform_int_distribution<size_t> count(1, 12);
  std::uniform_int_distribution<size_t> pick(0, kPieces.size() - 1);
  std::string source;
  for (size_t i = count(rng); i > 0; --i) source += kPieces[pick(rng)];
  return source;
}

TEST(ChatTemplateTest, RandomTemplatesNeverCrash) {
  std::mt19937 rng(20250101);
  int parsed_count = 0, rendered_count = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string source = RandomTemplate(rng);
    absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Parse(source);
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << source;
      continue;
    }
    ++parsed_count;
    absl::StatusOr<std::string> rendered = parsed->Render(kConversation, true, "<s>", "</s>");
    if (rendered.ok()) ++rendered_count;
  }
  // The generator reaches both sides: some templates parse and render, most do not parse.
  EXPECT_GT(parsed_count, 10);
  EXPECT_GT(rendered_count, 10);
}

// The bundled model's own template (models/apr-tiny/tokenizer_config.json): a
// Python-comment dialogue, the register of its training text.
TEST(BundledModel, AprTinyTemplateRendersTheDialogue) {
  std::ifstream in("models/apr-tiny/tokenizer_config.json");
  ASSERT_TRUE(in) << "models/apr-tiny/tokenizer_config.json";
  std::stringstream ss;
  ss << in.rdbuf();
  auto cfg = ReadTokenizerChatConfig(ss.str());
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->bos_token, "<|begin_of_text|>");
  EXPECT_EQ(cfg->eos_token, "<|end_of_text|>");
  auto t = ChatTemplate::Parse(cfg->chat_template);
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->Render({{"system", "You write Python. "}, {"user", "A stack class?"},
                        {"assistant", "class Stack:"}, {"user", "With push."}},
                       true, cfg->bos_token, cfg->eos_token);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|begin_of_text|># You write Python.\n# Q: A stack class?\nclass Stack:\n"
            "# Q: With push.\n# A:\n");
}

}  // namespace
}  // namespace apr::cluster::openai
