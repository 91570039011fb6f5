#include "cluster/openai/chat_template.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "cluster/openai/chat_template_internal.h"

namespace apr::cluster::openai {

namespace internal = chat_template_internal;

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string_view source) {
  absl::StatusOr<std::vector<internal::Token>> tokens = internal::Lex(source);
  if (!tokens.ok()) return tokens.status();
  absl::StatusOr<internal::NodeList> nodes = internal::ParseTokens(*std::move(tokens));
  if (!nodes.ok()) return nodes.status();
  return ChatTemplate(std::make_shared<const internal::NodeList>(*std::move(nodes)));
}

absl::StatusOr<std::string> ChatTemplate::Render(
    const std::vector<ChatMessage>& messages, bool add_generation_prompt,
    const std::string& bos_token, const std::string& eos_token,
    const std::map<std::string, std::string>& extra) const {
  internal::ValueList message_values;
  message_values.reserve(messages.size());
  for (const ChatMessage& message : messages) {
    message_values.push_back(internal::Value::Dict({
        {"role", internal::Value::String(message.role)},
        {"content", internal::Value::String(message.content)},
    }));
  }
  std::vector<std::pair<std::string, internal::Value>> globals;
  for (const auto& [name, value] : extra)
    globals.emplace_back(name, internal::Value::String(value));
  // Later entries win: the four standard variables over extras of the same name.
  globals.emplace_back("messages", internal::Value::List(std::move(message_values)));
  globals.emplace_back("add_generation_prompt", internal::Value::Bool(add_generation_prompt));
  globals.emplace_back("bos_token", internal::Value::String(bos_token));
  globals.emplace_back("eos_token", internal::Value::String(eos_token));
  return internal::RenderNodes(*body_, std::move(globals));
}

namespace {

// bos_token / eos_token: a string, {"content": "..."} (an AddedToken), or absent / null.
absl::StatusOr<std::string> ReadSpecialToken(const nlohmann::json& config, const char* field) {
  const auto found = config.find(field);
  if (found == config.end() || found->is_null()) return std::string();
  if (found->is_string()) return found->get<std::string>();
  if (found->is_object()) {
    const auto content = found->find("content");
    if (content != found->end() && content->is_string()) return content->get<std::string>();
  }
  return absl::InvalidArgumentError(std::string("tokenizer_config.json: ") + field +
                                    " is neither a string nor an object with a string content");
}

absl::StatusOr<std::string> ReadChatTemplate(const nlohmann::json& config) {
  const auto found = config.find("chat_template");
  if (found == config.end() || found->is_null()) {
    return absl::NotFoundError("tokenizer_config.json has no chat_template");
  }
  if (found->is_string()) return found->get<std::string>();
  if (!found->is_array()) {
    return absl::InvalidArgumentError(
        "tokenizer_config.json: chat_template is neither a string nor a list");
  }
  std::string names;
  for (const nlohmann::json& entry : *found) {
    const auto name = entry.is_object() ? entry.find("name") : entry.end();
    const auto text = entry.is_object() ? entry.find("template") : entry.end();
    if (!entry.is_object() || name == entry.end() || !name->is_string() || text == entry.end() ||
        !text->is_string()) {
      return absl::InvalidArgumentError(
          "tokenizer_config.json: chat_template list entries need string name and template");
    }
    if (name->get<std::string>() == "default") return text->get<std::string>();
    names += (names.empty() ? "" : ", ") + name->get<std::string>();
  }
  return absl::NotFoundError(
      "tokenizer_config.json has no chat_template named 'default' (has: " + names + ")");
}

}  // namespace

absl::StatusOr<TokenizerChatConfig> ReadTokenizerChatConfig(
    std::string_view tokenizer_config_json) {
  const nlohmann::json config =
      nlohmann::json::parse(tokenizer_config_json.begin(), tokenizer_config_json.end(),
                            /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) {
    return absl::InvalidArgumentError("tokenizer_config.json is not valid JSON");
  }
  if (!config.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json is not a JSON object");
  }
  TokenizerChatConfig result;
  absl::StatusOr<std::string> chat_template = ReadChatTemplate(config);
  if (!chat_template.ok()) return chat_template.status();
  result.chat_template = *std::move(chat_template);
  for (auto [field, target] :
       {std::pair{"bos_token", &result.bos_token}, std::pair{"eos_token", &result.eos_token}}) {
    absl::StatusOr<std::string> token = ReadSpecialToken(config, field);
    if (!token.ok()) return token.status();
    *target = *std::move(token);
  }
  return result;
}

}  // namespace apr::cluster::openai
