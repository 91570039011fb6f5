#include "tests/cluster/launched_streams.h"

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cluster/client.h"
#include "gtest/gtest.h"
#include "rpc/generation/v1/generation.grpc.pb.h"
#include "tests/reliability/harness.h"

namespace apr::cluster::testing {

namespace gv1 = ::apr::generation::v1;

LaunchedStreams StreamThreeGreedy(const std::string& name, const std::string& config_text) {
  LaunchedStreams result;
  reliability::Launch launch(name, config_text);
  const int port = launch.WaitReady(absl::Seconds(90));
  EXPECT_GT(port, 0) << launch.Log();
  if (port == 0) {
    result.log = launch.Log();
    return result;
  }
  auto fe = ConnectGeneration(absl::StrCat("127.0.0.1:", port));
  result.tokens.resize(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      gv1::GenerateRequest r;
      for (int k = 0; k < 100 + 150 * i; ++k)
        r.mutable_token_ids()->add_ids(5 + (k * 53 + i) % 3000);
      r.set_max_tokens(32);
      r.set_ignore_eos(true);
      r.mutable_sampling()->set_temperature(0);
      auto st = StreamGenerate(*fe, r, [&](const gv1::TokenChunk& c) {
        result.tokens[i].insert(result.tokens[i].end(), c.ids().begin(), c.ids().end());
      });
      EXPECT_TRUE(st.ok()) << st.status();
    });
  }
  for (auto& t : threads) t.join();
  result.log = launch.Log();
  return result;
}

std::string ReadFile(const std::string& path) {
  std::stringstream ss;
  ss << std::ifstream(path).rdbuf();
  return ss.str();
}

}  // namespace apr::cluster::testing
