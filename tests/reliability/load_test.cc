// 200 concurrent streaming requests on loopback against a launched local cluster (the CI
// size of bench:load_bench's 1,000): none lost, duplicated or mixed up; every stream's
// tokens equal the in-process reference for its request.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/reliability/harness.h"
#include "tests/reliability/load_driver.h"

namespace apr::reliability {
namespace {

TEST(LoadTest, TwoHundredConcurrentStreams) {
  Launch launch("load", LocalConfig(1, 64, "", "limits { max_streams_per_client: 1000 }"));
  const int port = launch.WaitReady(absl::Seconds(90));
  ASSERT_GT(port, 0) << launch.Log();
  LoadOptions o;
  o.streams = 200;
  auto r = RunLoad(absl::StrCat("127.0.0.1:", port), o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::cerr << r->Summary() << "\n";
  EXPECT_EQ(r->ok, o.streams) << absl::StrJoin(r->errors, "\n");
  EXPECT_EQ(r->failed, 0);
  EXPECT_EQ(r->lost, 0);
  EXPECT_EQ(r->duplicated, 0);
  EXPECT_EQ(r->mismatched, 0) << absl::StrJoin(r->errors, "\n");
  EXPECT_EQ(r->wrong_stop, 0);
}

}  // namespace
}  // namespace apr::reliability
