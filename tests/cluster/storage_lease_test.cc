// Leases on a storage node's sequences (issue 19 item 3): a real //kvstore:storage_node
// process on 127.0.0.1 with --lease_seconds=1. Sequences of a client that died (SIGKILL,
// no FreeSequence) are freed once the lease passes; a live RemoteTier keeps its sequences
// by renewing; a client that names no owner is never expired.
//   - 1,000 cycles: a child process creates a sequence as a worker does (metadata
//     "apr-kv-owner", its own id) with 2 blocks written, and is killed; afterwards the node
//     holds no block and no sequence, and freed every block it allocated.
//   - a RemoteTier child (the worker's client) killed the same way: freed too.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/testing/storage_node_process.h"
#include "rpc/kvstore/v1/kvstore.grpc.pb.h"

namespace apr::kvstore {
namespace {

namespace v1 = ::apr::kvstore::v1;
constexpr int kBlockBytes = 4096;

std::unique_ptr<v1::KvStore::Stub> Stub(const std::string& address) {
  return v1::KvStore::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

std::unique_ptr<grpc::ClientContext> Context(uint64_t owner) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (owner != 0) ctx->AddMetadata("apr-kv-owner", absl::StrCat(owner));
  return ctx;
}

// A sequence with 2 written blocks, created as `owner` (0: no owner metadata).
bool CreateWithBlocks(v1::KvStore::Stub& stub, uint64_t owner, uint64_t seq) {
  v1::CreateSequenceRequest c;
  c.set_sequence_id(seq);
  c.set_num_layers(1);
  c.set_num_kv_heads(1);
  v1::CreateSequenceResponse cr;
  if (!stub.CreateSequence(Context(owner).get(), c, &cr).ok()) return false;
  v1::AppendBlocksRequest a;
  a.set_sequence_id(seq);
  v1::BlockRange* r = a.add_blocks();
  r->set_count(2);
  a.set_data(std::string(2 * kBlockBytes, 'k'));
  v1::AppendBlocksResponse ar;
  return stub.AppendBlocks(Context(owner).get(), a, &ar).ok() && ar.slots_size() == 2;
}

v1::StatsResponse Stats(const std::string& address) {
  v1::StatsResponse s;
  EXPECT_TRUE(Stub(address)->Stats(Context(0).get(), v1::StatsRequest(), &s).ok());
  return s;
}

// Runs `body` in a child process that reports success on a pipe and then waits to be
// killed; kills it with SIGKILL once it reported. Returns whether it reported success.
template <typename F>
bool RunAndKill(F body) {
  int p[2];
  if (pipe(p) != 0) return false;
  const pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    const char ok = body() ? 1 : 0;
    if (write(p[1], &ok, 1) != 1) _exit(1);
    for (;;) pause();
  }
  close(p[1]);
  char ok = 0;
  const bool got = read(p[0], &ok, 1) == 1;
  close(p[0]);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return got && ok == 1;
}

// Polls Stats until the node holds no sequence, for up to `timeout`.
v1::StatsResponse WaitEmpty(const std::string& address, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  v1::StatsResponse s = Stats(address);
  while ((s.sequences() > 0 || s.used_blocks() > 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    s = Stats(address);
  }
  return s;
}

class StorageLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto node = testing::StorageNodeProcess::Start(
        testing::StorageNodeBinary(),
        {"--capacity_blocks=4096", absl::StrCat("--block_bytes=", kBlockBytes),
         "--ucx_tls=tcp", "--ucx_net_devices=lo", "--lease_seconds=1"},
        absl::Seconds(30));
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = *std::move(node);
  }
  std::unique_ptr<testing::StorageNodeProcess> node_;
};

TEST_F(StorageLeaseTest, AThousandKilledClientsLeaveNoSlotInUse) {
  // Children first: the parent touches gRPC only after the last fork.
  constexpr int kCycles = 1000;
  const std::string address = node_->address();
  int created = 0;
  for (int i = 0; i < kCycles; ++i) {
    created += RunAndKill([&] {
      auto stub = Stub(address);
      return CreateWithBlocks(*stub, /*owner=*/1000 + i, /*seq=*/i + 1);
    });
  }
  EXPECT_EQ(created, kCycles);
  const v1::StatsResponse after = Stats(address);
  EXPECT_EQ(after.blocks_allocated_total(), 2 * kCycles);
  const v1::StatsResponse end = WaitEmpty(address, absl::Seconds(10));
  EXPECT_EQ(end.sequences(), 0);
  EXPECT_EQ(end.used_blocks(), 0);
  EXPECT_EQ(end.blocks_freed_total(), 2 * kCycles);
  EXPECT_EQ(end.free_blocks(), end.capacity_blocks());
}

TEST_F(StorageLeaseTest, LiveClientsKeepTheirSequencesAndAKilledRemoteTierLosesIts) {
  const std::string address = node_->address();
  RemoteTierOptions o;
  o.address = address;
  o.ucx.tls = "tcp";
  o.ucx.net_devices = "lo";
  o.write_path = RemoteTierOptions::WritePath::kInline;
  o.lease_renewal = absl::Milliseconds(200);
  // A worker's client, killed after writing: its sequence goes with the lease.
  ASSERT_TRUE(RunAndKill([&] {
    auto tier = RemoteTier::Connect(o);
    if (!tier.ok() || !(*tier)->CreateSequence(77, 1, 1).ok()) return false;
    std::vector<std::byte> block(kBlockBytes);
    const std::byte* data[] = {block.data()};
    const BlockKey key{};
    return (*tier)->WriteBlocks(77, {&key, 1}, data).ok();
  }));
  // One that stays alive and renews, and one with no owner: both outlive the lease.
  auto live = RemoteTier::Connect(o);
  ASSERT_TRUE(live.ok()) << live.status();
  ASSERT_TRUE((*live)->CreateSequence(78, 1, 1).ok());
  auto stub = Stub(address);
  ASSERT_TRUE(CreateWithBlocks(*stub, /*owner=*/0, /*seq=*/79));
  absl::SleepFor(absl::Seconds(3));
  v1::StatsResponse s = Stats(address);
  EXPECT_EQ(s.sequences(), 2) << "expected 78 (renewed) and 79 (no owner) only";
  v1::FreeSequenceResponse freed;
  v1::FreeSequenceRequest f;
  f.set_sequence_id(77);
  EXPECT_EQ(stub->FreeSequence(Context(0).get(), f, &freed).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE((*live)->FreeSequence(78).ok());
  f.set_sequence_id(79);
  EXPECT_TRUE(stub->FreeSequence(Context(0).get(), f, &freed).ok());
  // A client that does not renew (lease_renewal 0) and stays idle loses its sequence.
  RemoteTierOptions idle = o;
  idle.lease_renewal = absl::ZeroDuration();
  auto quiet = RemoteTier::Connect(idle);
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  ASSERT_TRUE((*quiet)->CreateSequence(80, 1, 1).ok());
  absl::SleepFor(absl::Seconds(3));
  EXPECT_EQ((*quiet)->FreeSequence(80).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace apr::kvstore
