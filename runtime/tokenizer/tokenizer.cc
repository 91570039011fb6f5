#include "runtime/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/bpe.h"
#include "runtime/tokenizer/decoder.h"
#include "runtime/tokenizer/normalizer.h"
#include "runtime/tokenizer/post_processor.h"
#include "runtime/tokenizer/pre_tokenizer.h"
#include "runtime/tokenizer/string_map.h"
#include "runtime/tokenizer/tokenizer_json.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {

struct Tokenizer::Impl {
  std::unique_ptr<Bpe> bpe;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Decoder> decoder;
  PostProcessor post_processor;
  AddedTokenMatcher matcher{{}};
  absl::flat_hash_map<int32_t, std::string> added_by_id;
  StringMap<int32_t> added_by_content;
  StringSet special_contents;
  int32_t vocab_size = 0;

  const std::string* TokenOf(int32_t id) const {
    if (const auto it = added_by_id.find(id); it != added_by_id.end()) return &it->second;
    return bpe->IdToToken(id);
  }
  void EncodeNormalized(std::string_view text, bool at_origin, std::vector<int32_t>* ids) const;
  std::string DecodeIds(const std::vector<int32_t>& ids, bool skip_special, bool raw) const;
};

namespace {

// Gives added tokens the ids Hugging Face's AddedVocabulary::add_tokens does, which is
// not always the id the file records: a token already known keeps its id, a new one
// gets max(vocab entries, largest added id + 1).
std::vector<AddedToken> AssignIds(std::vector<AddedToken> tokens, const Bpe& bpe) {
  const int32_t model_size = static_cast<int32_t>(bpe.vocab_entries());
  absl::flat_hash_map<std::string, int32_t> ids;
  std::optional<int32_t> max_added;
  absl::flat_hash_map<int32_t, size_t> latest;  // id -> index in `out`
  std::vector<AddedToken> out;
  for (AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    int32_t id;
    if (const auto it = ids.find(token.content); it != ids.end()) {
      id = it->second;
    } else if (const std::optional<int32_t> model_id = bpe.TokenToId(token.content)) {
      id = *model_id;
    } else if (max_added && (*max_added >= model_size || model_size == 0)) {
      id = *max_added + 1;
    } else {
      id = model_size;
    }
    ids[token.content] = id;
    max_added = std::max(max_added.value_or(id), id);
    token.id = id;
    // A later entry for the same id replaces the earlier one.
    if (const auto it = latest.find(id); it != latest.end()) {
      out[it->second] = std::move(token);
    } else {
      latest[id] = out.size();
      out.push_back(std::move(token));
    }
  }
  return out;
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buffer;
  buffer << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return FromJson(buffer.str(), path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json,
                                                               std::string_view source) {
  const auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(std::string(source), ": ", s.message()));
  };
  absl::StatusOr<TokenizerSpec> spec = ParseTokenizerJson(json);
  if (!spec.ok()) return fail(spec.status());

  auto impl = std::make_unique<Impl>();
  absl::StatusOr<std::unique_ptr<Bpe>> bpe =
      Bpe::Create(std::move(spec->vocab), spec->merges, std::move(spec->bpe_options));
  if (!bpe.ok()) return fail(bpe.status());
  impl->bpe = *std::move(bpe);
  impl->normalizer = std::move(spec->normalizer);
  impl->pre_tokenizer = std::move(spec->pre_tokenizer);
  impl->decoder = std::move(spec->decoder);
  impl->post_processor = std::move(spec->post_processor);

  std::vector<AddedToken> added = AssignIds(std::move(spec->added_tokens), *impl->bpe);
  impl->vocab_size = impl->bpe->max_id() + 1;
  for (const AddedToken& t : added) {
    impl->added_by_id[t.id] = t.content;
    impl->added_by_content[t.content] = t.id;
    if (t.special) impl->special_contents.insert(t.content);
    impl->vocab_size = std::max(impl->vocab_size, t.id + 1);
  }
  // Normalized tokens are looked for in normalized text, so in their normalized spelling
  // (AddedVocabulary::refresh_added_tokens does the same).
  for (AddedToken& t : added) {
    if (t.normalized && impl->normalizer) impl->normalizer->Apply(&t.content);
  }
  impl->matcher = AddedTokenMatcher(added);
  // A template id with no token would reach the model as an id outside its vocabulary
  // (found by runtime/fuzz/tokenizer_json_fuzzer.cc).
  for (int32_t id : impl->post_processor.TemplateIds()) {
    if (impl->TokenOf(id) == nullptr) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat("post_processor: the template's special token id ", id,
                       " is neither in model.vocab nor in added_tokens")));
    }
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

// Hugging Face's AddedVocabulary::extract_and_normalize, then pre-tokenization and the
// model: tokens that are not `normalized` are cut out of the raw text, each stretch
// between them is normalized, and normalized tokens are cut out of that.
std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  // Hugging Face takes only valid UTF-8 (a Rust &str); other input is first repaired
  // the way from_utf8_lossy / Python's errors="replace" would.
  std::string repaired;
  if (!utf8::IsValid(text)) {
    repaired = utf8::Repair(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  std::string normalized;
  for (const Segment& segment : impl_->matcher.SplitPass(text, /*normalized=*/false)) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    normalized.assign(segment.text);
    if (impl_->normalizer) impl_->normalizer->Apply(&normalized);
    const bool at_origin = segment.text.data() == text.data();
    for (const Segment& s : impl_->matcher.SplitPass(normalized, /*normalized=*/true)) {
      if (s.id >= 0) {
        ids.push_back(s.id);
      } else {
        impl_->EncodeNormalized(s.text, at_origin && s.text.data() == normalized.data(), &ids);
      }
    }
  }
  return impl_->post_processor.Apply(std::move(ids), add_special_tokens);
}

void Tokenizer::Impl::EncodeNormalized(std::string_view text, bool at_origin,
                                       std::vector<int32_t>* ids) const {
  std::vector<PreToken> pieces;
  pieces.push_back({std::string(text), at_origin});
  if (pre_tokenizer) pre_tokenizer->ApplyTo(&pieces);
  for (const PreToken& piece : pieces) bpe->Tokenize(piece.text, ids);
}

std::string Tokenizer::Impl::DecodeIds(const std::vector<int32_t>& ids, bool skip_special,
                                       bool raw) const {
  std::vector<std::string> tokens;
  for (int32_t id : ids) {
    const std::string* token = TokenOf(id);
    if (token == nullptr) continue;  // unknown ids are dropped, as Hugging Face does
    if (skip_special && special_contents.contains(*token)) continue;
    tokens.push_back(*token);
  }
  // Without a decoder Hugging Face joins the tokens with spaces.
  if (!decoder) return absl::StrJoin(tokens, " ");
  decoder->Apply(&tokens, raw);
  return absl::StrJoin(tokens, "");
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->DecodeIds(ids, skip_special_tokens, /*raw=*/true);
}

std::string Tokenizer::DecodeText(const std::vector<int32_t>& ids,
                                  bool skip_special_tokens) const {
  return impl_->DecodeIds(ids, skip_special_tokens, /*raw=*/false);
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) {
    return it->second;
  }
  return impl_->bpe->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  const std::string* token = impl_->TokenOf(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const std::string* token = impl_->TokenOf(id);
  return token != nullptr && impl_->special_contents.contains(*token);
}

}  // namespace apr
