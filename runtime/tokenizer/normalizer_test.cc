// Hand-computed cases for the normalizers, and ICU's four Unicode forms compared with
// what Hugging Face tokenizers does to every code point (testdata/unicode_normalization.txt,
// written by tools/goldens/make_unicode_normalization_table.js).
#include "runtime/tokenizer/normalizer.h"

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/tokenizer/testdata_path.h"
#include "runtime/tokenizer/utf8.h"

namespace apr {
namespace {

std::string Normalize(const Normalizer& n, std::string text) {
  n.Apply(&text);
  return text;
}

TEST(NormalizerTest, UnicodeForms) {
  const auto nfc = MakeUnicodeNormalizer(UnicodeForm::kNfc);
  const auto nfd = MakeUnicodeNormalizer(UnicodeForm::kNfd);
  const auto nfkc = MakeUnicodeNormalizer(UnicodeForm::kNfkc);
  const auto nfkd = MakeUnicodeNormalizer(UnicodeForm::kNfkd);
  EXPECT_EQ(Normalize(*nfc, "e\u0301"), "\u00e9");
  EXPECT_EQ(Normalize(*nfd, "\u00e9"), "e\u0301");
  // Marks are put in canonical order: U+0323 (class 220) before U+0307 (230).
  EXPECT_EQ(Normalize(*nfd, "q\u0307\u0323"), "q\u0323\u0307");
  EXPECT_EQ(Normalize(*nfc, "\u1100\u1161\u11a8"), "\uac01");  // conjoining jamo to a syllable
  EXPECT_EQ(Normalize(*nfd, "\uac01"), "\u1100\u1161\u11a8");
  EXPECT_EQ(Normalize(*nfc, "\ufb01"), "\ufb01");  // compatibility characters stay under NFC
  EXPECT_EQ(Normalize(*nfkc, "\ufb01 \u2460 \uff21"), "fi 1 A");
  EXPECT_EQ(Normalize(*nfkd, "\u00bd\u00e9"), "1\u20442e\u0301");
  EXPECT_EQ(Normalize(*nfc, "\u212b"), "\u00c5");  // a singleton: Angstrom sign to A-ring
  EXPECT_EQ(Normalize(*nfc, ""), "");
}

TEST(NormalizerTest, PrependReplaceSequence) {
  const auto prepend = MakePrependNormalizer("\u2581");
  EXPECT_EQ(Normalize(*prepend, "hi"), "\u2581hi");
  EXPECT_EQ(Normalize(*prepend, ""), "");  // nothing is put before empty text
  const auto replace = MakeReplaceNormalizer(*Regex::Literal(" "), "\u2581");
  EXPECT_EQ(Normalize(*replace, " a  b "), "\u2581a\u2581\u2581b\u2581");
  EXPECT_EQ(Normalize(*MakeReplaceNormalizer(std::nullopt, "x"), "a b"), "a b");
  EXPECT_EQ(Normalize(*MakeReplaceNormalizer(*Regex::FromOniguruma("\\s+"), "_"), "a \t b\n"), "a_b_");
  // Empty matches are replaced too, but not one right after a match (as tokenizers).
  EXPECT_EQ(Normalize(*MakeReplaceNormalizer(*Regex::FromOniguruma("x*"), "-"), "axb"), "-a-b-");
  EXPECT_EQ(Normalize(*MakeReplaceNormalizer(*Regex::Literal(""), "-"), "ab"), "-a-b-");
  // Llama-2: Prepend, then Replace, so the prepended mark and the spaces look alike.
  std::vector<std::unique_ptr<Normalizer>> steps;
  steps.push_back(MakePrependNormalizer("\u2581"));
  steps.push_back(MakeReplaceNormalizer(*Regex::Literal(" "), "\u2581"));
  const auto llama2 = MakeSequenceNormalizer(std::move(steps));
  EXPECT_EQ(Normalize(*llama2, "Hello world"), "\u2581Hello\u2581world");
  EXPECT_EQ(Normalize(*llama2, " x"), "\u2581\u2581x");
  EXPECT_EQ(Normalize(*MakeSequenceNormalizer({}), "as is"), "as is");
}

std::string FromHex(std::istringstream& in) {
  std::string out, word;
  while (in >> word) utf8::AppendCodePoint(static_cast<char32_t>(std::stoul(word, nullptr, 16)), &out);
  return out;
}

// The table's rows, by form and code point ("-" rows hold the code point itself).
std::map<std::string, std::map<char32_t, std::string>> ReadTable() {
  std::map<std::string, std::map<char32_t, std::string>> table;
  std::ifstream file(TestdataPath("unicode_normalization.txt"));
  std::string line;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string form, cp, first;
    in >> form >> cp;
    const char32_t c = static_cast<char32_t>(std::stoul(cp, nullptr, 16));
    std::string rest;
    std::getline(in, rest);
    std::istringstream values(rest);
    std::string result = rest == " -" ? "" : FromHex(values);
    if (rest == " -") utf8::AppendCodePoint(c, &result);
    table[form][c] = result;
  }
  return table;
}

// ICU 72 knows Unicode 15.0, tokenizers' unicode-normalization-alignments crate Unicode
// 9.0; normalizer.cc passes code points newer than 9.0 through unchanged, as the crate
// does. Measured before that rule (2026-12-05): 378 (form, code point) differences, all on
// code points from Unicode 10 to 15 (e.g. NFKC of U+32FF, the order of U+07FD).
TEST(NormalizerTest, IcuMatchesTokenizersOnEveryCodePoint) {
  const auto table = ReadTable();
  ASSERT_FALSE(table.empty()) << "cannot read testdata/unicode_normalization.txt";
  const auto lookup = [&](const char* form, char32_t c, const std::string& fallback) {
    const auto f = table.find(form);
    if (f == table.end()) return fallback;
    const auto it = f->second.find(c);
    return it == f->second.end() ? fallback : it->second;
  };
  const auto nfc = MakeUnicodeNormalizer(UnicodeForm::kNfc);
  const auto nfd = MakeUnicodeNormalizer(UnicodeForm::kNfd);
  const auto nfkc = MakeUnicodeNormalizer(UnicodeForm::kNfkc);
  const auto nfkd = MakeUnicodeNormalizer(UnicodeForm::kNfkd);
  std::vector<std::string> differences;
  for (char32_t c = 0; c <= 0x10FFFF; ++c) {
    if ((c >= 0xD800 && c <= 0xDFFF) || (c >= 0xAC00 && c <= 0xD7A3)) continue;
    std::string s;
    utf8::AppendCodePoint(c, &s);
    const std::string want_nfd = lookup("NFD", c, s);
    const std::string want_nfkd = lookup("NFKD", c, want_nfd);
    const struct {
      const char* name;
      const Normalizer& n;
      std::string want;
    } forms[] = {{"NFD", *nfd, want_nfd},
                 {"NFC", *nfc, lookup("NFC", c, want_nfd)},
                 {"NFKD", *nfkd, want_nfkd},
                 {"NFKC", *nfkc, lookup("NFKC", c, want_nfkd)}};
    char hex[16];
    snprintf(hex, sizeof hex, "%04X", static_cast<unsigned>(c));
    for (const auto& f : forms) {
      if (Normalize(f.n, s) != f.want) differences.push_back(std::string(f.name) + " " + hex);
    }
    const bool want_order = table.count("ORDER") && table.at("ORDER").count(c);
    const std::string d = Normalize(*nfd, s);
    if ((Normalize(*nfd, s + "\u0334") != d + "\u0334") != want_order) {
      differences.push_back(std::string("ORDER ") + hex);
    }
  }
  std::string all;
  for (const std::string& d : differences) all += d + "\n";
  EXPECT_TRUE(differences.empty()) << differences.size() << " differences:\n" << all;
}

}  // namespace
}  // namespace apr
