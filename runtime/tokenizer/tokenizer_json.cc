#include "runtime/tokenizer/tokenizer_json.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "runtime/tokenizer/pipeline_json.h"

namespace apr {
namespace {

using Json = nlohmann::json;

bool IsNull(const Json& j, const char* key) { return !j.contains(key) || j[key].is_null(); }

std::string TypeOf(const Json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string()
             ? j["type"].get<std::string>()
             : j.dump();
}

bool BoolOr(const Json& j, const char* key, bool fallback) {
  return IsNull(j, key) ? fallback : j[key].get<bool>();
}

absl::Status Unsupported(absl::string_view part, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported ", part, ": ", what));
}

// A token id: an integer in [0, 2^31). get<int32_t>() would wrap larger numbers
// (2^32 + 5 becomes 5, another token) and truncate fractions.
absl::StatusOr<int32_t> TokenId(const Json& j, absl::string_view what) {
  bool in_range = false;
  if (j.is_number_unsigned()) {
    in_range = j.get<uint64_t>() <= INT32_MAX;
  } else if (j.is_number_integer()) {
    in_range = j.get<int64_t>() >= 0 && j.get<int64_t>() <= INT32_MAX;
  }
  if (!in_range) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": id ", j.dump(), " is not an integer in [0, 2^31)"));
  }
  return static_cast<int32_t>(j.get<int64_t>());
}

absl::StatusOr<SplitBehavior> ParseBehavior(const std::string& name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return Unsupported("Split behavior", name);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& j) {
  const std::string type = TypeOf(j);
  if (type == "ByteLevel") {
    return MakeByteLevelPreTokenizer(BoolOr(j, "add_prefix_space", true),
                                     BoolOr(j, "use_regex", true));
  }
  if (type == "Split") {
    const Json& pattern = j.at("pattern");
    absl::StatusOr<Regex> regex =
        pattern.contains("Regex") ? Regex::FromOniguruma(pattern["Regex"].get<std::string>())
        : pattern.contains("String")
            ? Regex::Literal(pattern["String"].get<std::string>())
            : absl::StatusOr<Regex>(Unsupported("Split pattern", pattern.dump()));
    if (!regex.ok()) return regex.status();
    absl::StatusOr<SplitBehavior> behavior = ParseBehavior(j.at("behavior").get<std::string>());
    if (!behavior.ok()) return behavior.status();
    return MakeSplitPreTokenizer(*std::move(regex), *behavior, BoolOr(j, "invert", false));
  }
  if (type == "Metaspace") {
    absl::StatusOr<MetaspaceOptions> m = ParseMetaspace(j);
    if (!m.ok()) return m.status();
    return MakeMetaspacePreTokenizer(m->replacement, m->prepend, m->split);
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const Json& step : j.at("pretokenizers")) {
      absl::StatusOr<std::unique_ptr<PreTokenizer>> p = ParsePreTokenizer(step);
      if (!p.ok()) return p.status();
      steps.push_back(*std::move(p));
    }
    return MakeSequencePreTokenizer(std::move(steps));
  }
  return Unsupported("pre_tokenizer", type);
}

absl::StatusOr<Template> ParseTemplate(const Json& j) {
  const Json& special_tokens = j.at("special_tokens");
  Template single;
  for (const Json& piece : j.at("single")) {
    if (piece.contains("Sequence")) {
      const std::string id = piece["Sequence"].at("id").get<std::string>();
      if (id != "A") return Unsupported("TemplateProcessing single template sequence", id);
      single.push_back({true, {}});
    } else if (piece.contains("SpecialToken")) {
      const std::string name = piece["SpecialToken"].at("id").get<std::string>();
      if (!special_tokens.contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("TemplateProcessing: special token '", name, "' has no ids"));
      }
      std::vector<int32_t> ids;
      for (const Json& id : special_tokens[name].at("ids")) {
        absl::StatusOr<int32_t> i = TokenId(id, absl::StrCat("special token '", name, "'"));
        if (!i.ok()) return i.status();
        ids.push_back(*i);
      }
      single.push_back({false, std::move(ids)});
    } else {
      return Unsupported("TemplateProcessing piece", piece.dump());
    }
  }
  return single;
}

// Collects the TemplateProcessing of `j` (at most one, possibly inside a Sequence).
absl::Status ParsePostProcessor(const Json& j, std::optional<Template>* single) {
  const std::string type = TypeOf(j);
  if (type == "ByteLevel") return absl::OkStatus();  // moves offsets only
  if (type == "TemplateProcessing") {
    if (single->has_value()) return Unsupported("post_processor", "two TemplateProcessing");
    absl::StatusOr<Template> t = ParseTemplate(j);
    if (!t.ok()) return t.status();
    *single = *std::move(t);
    return absl::OkStatus();
  }
  if (type == "Sequence") {
    for (const Json& p : j.at("processors")) {
      APR_RETURN_IF_ERROR(ParsePostProcessor(p, single));
    }
    return absl::OkStatus();
  }
  return Unsupported("post_processor", type);
}

absl::Status ParseModel(const Json& model, TokenizerSpec* spec) {
  if (!IsNull(model, "type") && model["type"] != "BPE") {
    return Unsupported("model", TypeOf(model));
  }
  if (!IsNull(model, "dropout") && model["dropout"].get<double>() != 0.0) {
    return Unsupported("BPE option", "dropout");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!IsNull(model, key) && !model[key].get<std::string>().empty()) {
      return Unsupported("BPE option", key);
    }
  }
  spec->bpe_options.byte_fallback = BoolOr(model, "byte_fallback", false);
  if (!IsNull(model, "unk_token")) {
    spec->bpe_options.unk_token = model["unk_token"].get<std::string>();
  }
  spec->bpe_options.fuse_unk = BoolOr(model, "fuse_unk", false);
  spec->bpe_options.ignore_merges = BoolOr(model, "ignore_merges", false);

  const Json& vocab = model.at("vocab");
  spec->vocab.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    absl::StatusOr<int32_t> i = TokenId(id, absl::StrCat("vocab token '", token, "'"));
    if (!i.ok()) return i.status();
    spec->vocab[token] = *i;
  }

  const Json& merges = model.at("merges");
  spec->merges.reserve(merges.size());
  for (const Json& merge : merges) {
    if (merge.is_array()) {  // ["a", "b"]: the form that allows spaces in tokens
      if (merge.size() != 2) return absl::InvalidArgumentError("bad merge " + merge.dump());
      spec->merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      continue;
    }
    const std::string line = merge.get<std::string>();  // "a b"
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      return absl::InvalidArgumentError("bad merge " + merge.dump());
    }
    spec->merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenizerSpec> ParseRoot(const Json& root) {
  TokenizerSpec spec;
  for (const char* key : {"truncation", "padding"}) {
    if (!IsNull(root, key)) return Unsupported(key, "must be null");
  }
  if (!IsNull(root, "normalizer")) {
    absl::StatusOr<std::unique_ptr<Normalizer>> n = ParseNormalizer(root["normalizer"]);
    if (!n.ok()) return n.status();
    spec.normalizer = *std::move(n);
  }
  if (!IsNull(root, "decoder")) {
    absl::StatusOr<std::unique_ptr<Decoder>> d = ParseDecoder(root["decoder"]);
    if (!d.ok()) return d.status();
    spec.decoder = *std::move(d);
  }
  APR_RETURN_IF_ERROR(ParseModel(root.at("model"), &spec));
  if (!IsNull(root, "pre_tokenizer")) {
    absl::StatusOr<std::unique_ptr<PreTokenizer>> p = ParsePreTokenizer(root["pre_tokenizer"]);
    if (!p.ok()) return p.status();
    spec.pre_tokenizer = *std::move(p);
  }
  if (!IsNull(root, "post_processor")) {
    std::optional<Template> single;
    APR_RETURN_IF_ERROR(ParsePostProcessor(root["post_processor"], &single));
    spec.post_processor = PostProcessor(std::move(single));
  }
  if (!IsNull(root, "added_tokens")) {
    for (const Json& t : root["added_tokens"]) {
      AddedToken token;
      absl::StatusOr<int32_t> id = TokenId(t.at("id"), "added token");
      if (!id.ok()) return id.status();
      token.id = *id;
      token.content = t.at("content").get<std::string>();
      token.single_word = BoolOr(t, "single_word", false);
      token.lstrip = BoolOr(t, "lstrip", false);
      token.rstrip = BoolOr(t, "rstrip", false);
      token.special = BoolOr(t, "special", false);
      token.normalized = BoolOr(t, "normalized", !token.special);
      spec.added_tokens.push_back(std::move(token));
    }
  }
  return spec;
}

}  // namespace

absl::StatusOr<TokenizerSpec> ParseTokenizerJson(std::string_view json) {
  try {
    const Json root = Json::parse(json);
    if (!root.is_object()) return absl::InvalidArgumentError("not a JSON object");
    return ParseRoot(root);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad JSON: ", e.what()));
  }
}

}  // namespace apr
