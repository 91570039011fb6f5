#include "cluster/openai/stop_strings.h"

#include "gtest/gtest.h"

namespace apr::cluster::openai {
namespace {

// Feeds `chunks` and returns what would be sent.
std::string Feed(StopStrings& s, const std::vector<std::string>& chunks) {
  std::string out;
  for (const std::string& c : chunks) out += s.Push(c);
  return out + s.Flush();
}

TEST(StopStrings, NoStopsPassesEverythingAtOnce) {
  StopStrings s({});
  EXPECT_EQ(s.Push("abc"), "abc");
  EXPECT_EQ(s.Flush(), "");
  EXPECT_FALSE(s.stopped());
}

TEST(StopStrings, MatchAcrossChunksCutsBeforeIt) {
  StopStrings s({"END", "\n\n"});
  EXPECT_EQ(Feed(s, {"hello E", "N", "D and more"}), "hello ");
  EXPECT_TRUE(s.stopped());
  StopStrings t({"END", "\n\n"});
  EXPECT_EQ(Feed(t, {"a\n", "\nb"}), "a");
  EXPECT_TRUE(t.stopped());
}

TEST(StopStrings, HoldsBackOnlyWhatCouldStartAMatch) {
  StopStrings s({"xyz"});
  EXPECT_EQ(s.Push("abcd"), "ab");  // the last 2 bytes could begin "xyz": held
  EXPECT_EQ(s.Push("e"), "c");
  EXPECT_EQ(s.Flush(), "de");
  EXPECT_FALSE(s.stopped());
}

TEST(StopStrings, EarliestMatchOfSeveralWins) {
  StopStrings s({"bb", "a"});
  EXPECT_EQ(Feed(s, {"xxbba"}), "xx");
}

TEST(StopStrings, NeverSplitsAUtf8Character) {
  StopStrings s({"zz"});
  // "é" is two bytes; holding back one byte must not cut it.
  const std::string out = s.Push("a\xc3\xa9");
  EXPECT_EQ(out, "a");
  EXPECT_EQ(s.Flush(), "\xc3\xa9");
}

TEST(StopStrings, NothingAfterTheMatch) {
  StopStrings s({"."});
  EXPECT_EQ(s.Push("one. two"), "one");
  EXPECT_EQ(s.Push("three"), "");
  EXPECT_EQ(s.Flush(), "");
}

}  // namespace
}  // namespace apr::cluster::openai
