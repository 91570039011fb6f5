// Expected pieces were worked out by hand from the patterns and agree with Hugging Face
// tokenizers' PreTokenizer.pre_tokenize_str.
#include "runtime/tokenizer/pre_tokenizer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace apr {
namespace {

using Pieces = std::vector<std::string>;

constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

Pieces PreTokenize(const PreTokenizer& p, const std::string& text) {
  Pieces pieces{text};
  p.Apply(&pieces);
  return pieces;
}

std::unique_ptr<PreTokenizer> Split(std::string_view pattern,
                                    SplitBehavior behavior = SplitBehavior::kIsolated,
                                    bool invert = false) {
  return MakeSplitPreTokenizer(*Regex::FromOniguruma(pattern), behavior, invert);
}

TEST(PreTokenizerTest, Gpt2AndLlama3SplitWhitespaceDifferently) {
  const std::string text = "Hello world!!  \n\n  x";
  // GPT-2: \s+(?!\S) leaves the last space of a run to the next word.
  EXPECT_EQ(PreTokenize(*Split(kGpt2Pattern), text),
            (Pieces{"Hello", " world", "!!", "  \n\n ", " x"}));
  // Llama-3: \s*[\r\n]+ ends the run at the last newline first.
  EXPECT_EQ(PreTokenize(*Split(kLlama3Pattern), text),
            (Pieces{"Hello", " world", "!!", "  \n\n", " ", " x"}));
  EXPECT_EQ(PreTokenize(*Split(kGpt2Pattern), "a \t\n  b  "), (Pieces{"a", " \t\n ", " b", "  "}));
  EXPECT_EQ(PreTokenize(*Split(kLlama3Pattern), "a \t\n  b  "), (Pieces{"a", " \t\n", " ", " b", "  "}));
}

TEST(PreTokenizerTest, Contractions) {
  const std::string text = "DON'T it's we'LL";
  // GPT-2's contractions are lower case only; Llama-3's ignore case.
  EXPECT_EQ(PreTokenize(*Split(kGpt2Pattern), text),
            (Pieces{"DON", "'", "T", " it", "'s", " we", "'", "LL"}));
  EXPECT_EQ(PreTokenize(*Split(kLlama3Pattern), text), (Pieces{"DON", "'T", " it", "'s", " we", "'LL"}));
}

TEST(PreTokenizerTest, DigitsInGroupsOfThreeForLlama3) {
  EXPECT_EQ(PreTokenize(*Split(kGpt2Pattern), "1234567 12"), (Pieces{"1234567", " 12"}));
  EXPECT_EQ(PreTokenize(*Split(kLlama3Pattern), "1234567 12"), (Pieces{"123", "456", "7", " ", "12"}));
}

TEST(PreTokenizerTest, UnicodeLettersEmojiAndPunctuation) {
  for (std::string_view pattern : {kGpt2Pattern, kLlama3Pattern}) {
    EXPECT_EQ(PreTokenize(*Split(pattern), "naïve café 日本語"), (Pieces{"naïve", " café", " 日本語"}));
    EXPECT_EQ(PreTokenize(*Split(pattern), "I ❤️ 😀😀!"), (Pieces{"I", " ❤️", " 😀😀!"}));
  }
  // Llama-3 lets one non-letter lead a word and keeps newlines with punctuation.
  EXPECT_EQ(PreTokenize(*Split(kLlama3Pattern), "!hello (x)\r\n\r\ny"),
            (Pieces{"!hello", " (", "x", ")\r\n\r\n", "y"}));
  EXPECT_EQ(PreTokenize(*Split(kGpt2Pattern), "!hello (x)\r\n\r\ny"),
            (Pieces{"!", "hello", " (", "x", ")", "\r\n\r", "\n", "y"}));
  // U+180E is not white space (nor a letter) in Oniguruma's view.
  EXPECT_EQ(PreTokenize(*Split(kLlama3Pattern), "a\u00A0b\u180Ec"), (Pieces{"a", "\u00A0b", "\u180Ec"}));
}

TEST(PreTokenizerTest, SplitBehaviors) {
  const std::string text = "a,b,,c,";
  const auto run = [&](SplitBehavior behavior, bool invert) {
    return PreTokenize(*MakeSplitPreTokenizer(*Regex::Literal(","), behavior, invert), text);
  };
  EXPECT_EQ(run(SplitBehavior::kRemoved, false), (Pieces{"a", "b", "c"}));
  EXPECT_EQ(run(SplitBehavior::kRemoved, true), (Pieces{",", ",", ",", ","}));
  EXPECT_EQ(run(SplitBehavior::kIsolated, false), (Pieces{"a", ",", "b", ",", ",", "c", ","}));
  EXPECT_EQ(run(SplitBehavior::kMergedWithPrevious, false), (Pieces{"a,", "b,", ",", "c,"}));
  EXPECT_EQ(run(SplitBehavior::kMergedWithPrevious, true), (Pieces{"a", ",b", ",", ",c", ","}));
  EXPECT_EQ(run(SplitBehavior::kMergedWithNext, false), (Pieces{"a", ",b", ",", ",c", ","}));
  EXPECT_EQ(run(SplitBehavior::kMergedWithNext, true), (Pieces{"a,", "b,", ",", "c,"}));
  EXPECT_EQ(run(SplitBehavior::kContiguous, false), (Pieces{"a", ",", "b", ",,", "c", ","}));
}

TEST(PreTokenizerTest, EmptyMatchesMakeNoPieces) {
  EXPECT_EQ(PreTokenize(*Split("x*"), "axxb x"), (Pieces{"a", "xx", "b", " ", "x"}));
}

TEST(PreTokenizerTest, ByteLevelSpellsPiecesInTheByteAlphabet) {
  // Ġ is a space, Ċ a newline.
  EXPECT_EQ(PreTokenize(*MakeByteLevelPreTokenizer(false, true), "Hello world!!  \n\n  x"),
            (Pieces{"Hello", "Ġworld", "!!", "ĠĠĊĊĠ", "Ġx"}));
  EXPECT_EQ(PreTokenize(*MakeByteLevelPreTokenizer(false, false), "a b\n"), (Pieces{"aĠbĊ"}));
  EXPECT_EQ(PreTokenize(*MakeByteLevelPreTokenizer(false, false), "é"), (Pieces{"Ã©"}));
  // add_prefix_space adds one space, only where there is none.
  EXPECT_EQ(PreTokenize(*MakeByteLevelPreTokenizer(true, true), "hi you"), (Pieces{"Ġhi", "Ġyou"}));
  EXPECT_EQ(PreTokenize(*MakeByteLevelPreTokenizer(true, true), " hi"), (Pieces{"Ġhi"}));
}

TEST(PreTokenizerTest, SequenceRunsStepsInOrder) {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  steps.push_back(Split(kLlama3Pattern));
  steps.push_back(MakeByteLevelPreTokenizer(false, false));
  EXPECT_EQ(PreTokenize(*MakeSequencePreTokenizer(std::move(steps)), "Hello world!!  \n\n  x"),
            (Pieces{"Hello", "Ġworld", "!!", "ĠĠĊĊ", "Ġ", "Ġx"}));
}

TEST(PreTokenizerTest, Metaspace) {
  const std::string bar = "\u2581";
  const auto first = MakeMetaspacePreTokenizer(bar, PrependScheme::kFirst, true);
  EXPECT_EQ(PreTokenize(*first, "hello  world "),
            (Pieces{bar + "hello", bar, bar + "world", bar}));
  // Only the piece at the start of the input gets the prepended ▁ under "first".
  std::vector<PreToken> pieces = {{"a b", true}, {"c", false}};
  first->ApplyTo(&pieces);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].text, bar + "a");
  EXPECT_EQ(pieces[1].text, bar + "b");
  EXPECT_EQ(pieces[2].text, "c");
  const auto always = MakeMetaspacePreTokenizer(bar, PrependScheme::kAlways, false);
  pieces = {{"a b", true}, {"c", false}, {bar + "d", false}};
  always->ApplyTo(&pieces);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].text, bar + "a" + bar + "b");
  EXPECT_EQ(pieces[1].text, bar + "c");
  EXPECT_EQ(pieces[2].text, bar + "d");  // already starts with ▁
  const auto never = MakeMetaspacePreTokenizer(bar, PrependScheme::kNever, true);
  EXPECT_EQ(PreTokenize(*never, "a b"), (Pieces{"a", bar + "b"}));
}

}  // namespace
}  // namespace apr
