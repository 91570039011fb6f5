// The two tokenizers of testdata/ (made by make_testdata.py) have a vocabulary whose ids
// can be read off by hand: a byte's character has the byte's value ('H' = 72, the space
// 'Ġ' = 32, 'x' = 120), merge number r makes id 256 + r, and added tokens start at 276.
// Merges: 0 Ġ+w, 1 o+r, 2 Ġw+or, 3 l+d, 4 Ġwor+ld = "Ġworld" 260, 5 H+e, 6 l+l, 7 He+ll,
// 8 Hell+o = "Hello" 264, 9 "!!" 265, 10 "ĊĊ" 266, 11 "ĠĠ" 267, 12 "'s" 268, 13 "12" 269,
// 14 "34" 270, 15 "'T" 271, 16 "aa" 272, 17 "hi" 273, 18 "é" (Ã+©) 274; "Ġxyz" is 275.
// The expectations below were worked out by hand and agree with Hugging Face tokenizers.
#include "runtime/tokenizer/tokenizer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/tokenizer/testdata_path.h"

namespace apr {
namespace {

using Ids = std::vector<int32_t>;

std::unique_ptr<Tokenizer> Load(const std::string& name) {
  auto tokenizer = Tokenizer::FromFile(TestdataPath(name));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

class Gpt2TinyTest : public ::testing::Test {
 protected:
  // ByteLevel pre-tokenizer with the GPT-2 regex; <|endoftext|> = 276.
  std::unique_ptr<Tokenizer> tok_ = Load("gpt2_tiny.json");
};

class Llama3TinyTest : public ::testing::Test {
 protected:
  // Llama-3 Split regex + ByteLevel, ignore_merges, BOS template; <|begin_of_text|> = 276,
  // <|end_of_text|> = 277, <|eot_id|> = 278, <tool> (not special) = 279.
  std::unique_ptr<Tokenizer> tok_ = Load("llama3_tiny.json");
};

TEST_F(Gpt2TinyTest, EncodesByHand) {
  ASSERT_NE(tok_, nullptr);
  // Hello | Ġworld | !! | ĠĠĊĊĠ -> ĠĠ ĊĊ Ġ | Ġx -> Ġ x
  EXPECT_EQ(tok_->Encode("Hello world!!  \n\n  x"), (Ids{264, 260, 265, 267, 266, 32, 32, 120}));
  // One piece of digits: 12 (rank 13) then 34 (rank 14).
  EXPECT_EQ(tok_->Encode("1234567"), (Ids{269, 270, 53, 54, 55}));
  // Upper-case contraction is not a GPT-2 contraction: DON | ' | T.
  EXPECT_EQ(tok_->Encode("DON'T"), (Ids{68, 79, 78, 39, 84}));
  EXPECT_EQ(tok_->Encode("it's"), (Ids{105, 116, 268}));
  EXPECT_EQ(tok_->Encode("aaa"), (Ids{272, 97}));
  EXPECT_EQ(tok_->Encode(" xyz"), (Ids{32, 120, 121, 122}));  // merges cannot reach Ġxyz
  EXPECT_EQ(tok_->Encode("café"), (Ids{99, 97, 102, 274}));
  EXPECT_EQ(tok_->Encode("😀"), (Ids{240, 159, 152, 128}));  // the four UTF-8 bytes
  EXPECT_EQ(tok_->Encode("<|endoftext|>hi"), (Ids{276, 273}));
  EXPECT_EQ(tok_->Encode(""), (Ids{}));
}

TEST_F(Gpt2TinyTest, NoTemplateMeansNoBos) {
  ASSERT_NE(tok_, nullptr);
  EXPECT_EQ(tok_->Encode("hi", true), tok_->Encode("hi", false));
}

TEST_F(Llama3TinyTest, EncodesByHand) {
  ASSERT_NE(tok_, nullptr);
  // Hello | Ġworld | !! | ĠĠĊĊ -> ĠĠ ĊĊ | Ġ | Ġx -> Ġ x
  EXPECT_EQ(tok_->Encode("Hello world!!  \n\n  x", false),
            (Ids{264, 260, 265, 267, 266, 32, 32, 120}));
  // 123 | 456 | 7: the 3+4 merge cannot cross a group.
  EXPECT_EQ(tok_->Encode("1234567", false), (Ids{269, 51, 52, 53, 54, 55}));
  // Contractions ignore case: DON | 'T.
  EXPECT_EQ(tok_->Encode("DON'T", false), (Ids{68, 79, 78, 271}));
  EXPECT_EQ(tok_->Encode("it's", false), (Ids{105, 116, 268}));
  // ignore_merges: a pre-token in the vocabulary is taken whole.
  EXPECT_EQ(tok_->Encode(" xyz", false), (Ids{275}));
  EXPECT_EQ(tok_->Encode("😀", false), (Ids{240, 159, 152, 128}));
}

TEST_F(Llama3TinyTest, TemplateAddsBos) {
  ASSERT_NE(tok_, nullptr);
  EXPECT_EQ(tok_->Encode("hi", true), (Ids{276, 273}));
  EXPECT_EQ(tok_->Encode("hi", false), (Ids{273}));
  EXPECT_EQ(tok_->Encode("", true), (Ids{276}));
}

TEST_F(Llama3TinyTest, SpecialTokensInsideText) {
  ASSERT_NE(tok_, nullptr);
  EXPECT_EQ(tok_->Encode("<|begin_of_text|>hi<|end_of_text|>", true), (Ids{276, 276, 273, 277}));
  EXPECT_EQ(tok_->Encode("hi<|eot_id|>", false), (Ids{273, 278}));
  EXPECT_EQ(tok_->Encode("a<tool>b", false), (Ids{97, 279, 98}));
  // Not quite a special token: plain text.
  EXPECT_EQ(tok_->Encode("<|eot_id|", false), (Ids{60, 124, 101, 111, 116, 95, 105, 100, 124}));
}

TEST_F(Llama3TinyTest, Decodes) {
  ASSERT_NE(tok_, nullptr);
  for (const std::string text :
       {"Hello world!!  \n\n  x", "it's DON'T 1234567", "café 😀 日本", "a<tool>b<|eot_id|>", ""}) {
    EXPECT_EQ(tok_->Decode(tok_->Encode(text, false)), text);
  }
  const Ids ids = {276, 273, 279, 277};
  EXPECT_EQ(tok_->Decode(ids), "<|begin_of_text|>hi<tool><|end_of_text|>");
  // <tool> is an added token but not a special one: it stays.
  EXPECT_EQ(tok_->Decode(ids, /*skip_special_tokens=*/true), "hi<tool>");
  EXPECT_EQ(tok_->Decode({273, 99999, -5}), "hi");  // unknown ids are dropped
  // A lone byte of a multi-byte character comes back as that byte.
  EXPECT_EQ(tok_->Decode({240, 159}), "\xF0\x9F");
}

TEST_F(Llama3TinyTest, Vocabulary) {
  ASSERT_NE(tok_, nullptr);
  EXPECT_EQ(tok_->vocab_size(), 280);
  EXPECT_EQ(tok_->TokenToId("Hello"), 264);
  EXPECT_EQ(tok_->TokenToId("<|eot_id|>"), 278);
  EXPECT_EQ(tok_->TokenToId("nope"), std::nullopt);
  EXPECT_EQ(tok_->IdToToken(260), "Ġworld");
  EXPECT_EQ(tok_->IdToToken(277), "<|end_of_text|>");
  EXPECT_EQ(tok_->IdToToken(280), std::nullopt);
  EXPECT_TRUE(tok_->IsSpecial(276));
  EXPECT_FALSE(tok_->IsSpecial(279));
  EXPECT_FALSE(tok_->IsSpecial(264));
}

// Invalid UTF-8 cannot reach Hugging Face (it takes str); here it is first repaired as
// Python's errors="replace" would, so the ids are those of the repaired text.
TEST_F(Llama3TinyTest, InvalidUtf8IsEncodedAsReplacementCharacters) {
  ASSERT_NE(tok_, nullptr);
  EXPECT_EQ(tok_->Encode("a\xFF" "b\xF0\x9F", false), tok_->Encode("a\uFFFD" "b\uFFFD", false));
  EXPECT_EQ(tok_->Decode(tok_->Encode("x\xC3", false)), "x\uFFFD");
}

// Hugging Face does not keep the ids a file gives its added tokens: a new token gets the
// next free id after the model's vocabulary, one already in the vocabulary keeps its id.
TEST(TokenizerTest, AddedTokenIdsFollowHuggingFace) {
  const std::string json = R"({
    "added_tokens": [
      {"id": 500, "content": "<a>", "special": true},
      {"id": 400, "content": "<b>", "special": true},
      {"id": 7, "content": "b", "special": false}],
    "normalizer": null, "pre_tokenizer": null, "post_processor": null,
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}})";
  auto tok = Tokenizer::FromJson(json, "inline");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->TokenToId("<a>"), 3);
  EXPECT_EQ((*tok)->TokenToId("<b>"), 4);
  EXPECT_EQ((*tok)->TokenToId("b"), 1);
  EXPECT_EQ((*tok)->vocab_size(), 5);
  // "b" is matched as an added token before BPE could merge it with "a".
  EXPECT_EQ((*tok)->Encode("ab<a>"), (Ids{0, 1, 3}));
}

absl::Status LoadError(const std::string& json) {
  auto tok = Tokenizer::FromJson(json, "some/tokenizer.json");
  return tok.ok() ? absl::OkStatus() : tok.status();
}

std::string With(const std::string& field) {
  return R"({"normalizer": null, "pre_tokenizer": null, "post_processor": null,
             "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []})" +
         field + "}";
}

TEST(TokenizerTest, RejectsWhatItDoesNotSupportByName) {
  EXPECT_TRUE(LoadError(With("")).ok()) << LoadError(With(""));
  const struct {
    std::string json;
    std::string expected;
  } cases[] = {
      {R"({"normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", "vocab": {}, "merges": []},
           "decoder": {"type": "ByteLevel"}})", "unsupported normalizer: Lowercase"},
      // Inside a Sequence the error names the step that is not supported.
      {With(R"(, "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"},
                 {"type": "BertNormalizer"}]})"), "unsupported normalizer: BertNormalizer"},
      {With(R"(, "normalizer": {"type": "Replace", "pattern": {"Glob": "*"}, "content": ""})"),
       "unsupported Replace pattern"},
      {With(R"(, "pre_tokenizer": {"type": "Metaspace", "replacement": "ab"})"),
       "Metaspace replacement must be one character"},
      {With(R"(, "pre_tokenizer": {"type": "Metaspace", "replacement": "_",
                 "prepend_scheme": "sometimes"})"), "unsupported Metaspace prepend_scheme: sometimes"},
      {With(R"(, "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"},
                 {"type": "CTC"}]})"), "unsupported decoder: CTC"},
      {R"({"normalizer": null, "decoder": {"type": "ByteLevel"},
           "model": {"type": "WordPiece", "vocab": {}}})", "unsupported model: WordPiece"},
      {With(R"(, "pre_tokenizer": {"type": "Whitespace"})"), "unsupported pre_tokenizer: Whitespace"},
      {With(R"(, "post_processor": {"type": "RobertaProcessing"})"),
       "unsupported post_processor: RobertaProcessing"},
      {With(R"(, "decoder": {"type": "WordPiece"})"), "unsupported decoder: WordPiece"},
      {With(R"(, "truncation": {"max_length": 8})"), "unsupported truncation"},
      {With(R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("},
                 "behavior": "Isolated"})"), "bad regex"},
      {With(R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"},
                 "behavior": "Sideways"})"), "unsupported Split behavior: Sideways"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]},
           "decoder": {"type": "ByteLevel"}})", "merge 0"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [],
           "continuing_subword_prefix": "##"}})", "unsupported BPE option: continuing_subword_prefix"},
      {R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []},
           "decoder": {"type": "ByteLevel"}})",
       "vocab token 'a': id \"zero\" is not an integer in [0, 2^31)"},
      // Ids that do not fit would wrap to other tokens' ids (2^32 + 5 to 5).
      {R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 4294967301}, "merges": []},
           "decoder": {"type": "ByteLevel"}})",
       "vocab token 'b': id 4294967301 is not an integer in [0, 2^31)"},
      {R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []},
           "decoder": {"type": "ByteLevel"}})",
       "vocab token 'a': id -1 is not"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0.5}, "merges": []},
           "decoder": {"type": "ByteLevel"}})",
       "vocab token 'a': id 0.5 is not"},
      {With(R"(, "added_tokens": [{"id": 99999999999, "content": "<s>"}])"),
       "added token: id 99999999999 is not"},
      // Found by runtime/fuzz/tokenizer_json_fuzzer.cc: an id table of 16 GB.
      {R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 2000000000}, "merges": []},
           "decoder": {"type": "ByteLevel"}})",
       "vocab id 2000000000 for 2 tokens"},
      {"{not json", "bad JSON"},
      // Found by runtime/fuzz/tokenizer_json_fuzzer.cc: a template id with no token.
      {With(R"(, "post_processor": {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                            {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [7],
                 "tokens": ["<s>"]}}})"),
       "the template's special token id 7 is neither in model.vocab nor in added_tokens"},
      {With(R"(, "post_processor": {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}],
                 "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [4294967296],
                 "tokens": ["<s>"]}}})"),
       "special token '<s>': id 4294967296 is not"},
  };
  for (const auto& c : cases) {
    const absl::Status status = LoadError(c.json);
    EXPECT_FALSE(status.ok()) << c.json;
    EXPECT_NE(status.message().find("some/tokenizer.json: "), absl::string_view::npos) << status;
    EXPECT_NE(status.message().find(c.expected), absl::string_view::npos)
        << status << "\nexpected to contain: " << c.expected;
  }
}

TEST(TokenizerTest, MissingFileIsNotFound) {
  auto tok = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(tok.status().message().find("/nonexistent/tokenizer.json"), absl::string_view::npos);
}

}  // namespace
}  // namespace apr
