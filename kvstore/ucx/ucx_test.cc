// The UCX wrappers across two real processes: a forked child registers memory and serves
// it; the parent reads and writes it with one-sided operations, over TCP on the loopback
// interface and over shared memory. Then the child is killed and the parent must get an
// error, not hang.
#include "kvstore/ucx/ucx.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kvstore/host_memory.h"

namespace apr::kvstore::ucx {
namespace {

constexpr size_t kSlot = 2048;
constexpr size_t kSlots = 64;

void WriteString(int fd, const std::string& s) {
  uint64_t n = s.size();
  ASSERT_EQ(write(fd, &n, sizeof n), static_cast<ssize_t>(sizeof n));
  ASSERT_EQ(write(fd, s.data(), n), static_cast<ssize_t>(n));
}

std::string ReadString(int fd) {
  uint64_t n = 0;
  if (read(fd, &n, sizeof n) != sizeof n) return "";
  std::string s(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, s.data() + got, n - got);
    if (r <= 0) return "";
    got += r;
  }
  return s;
}

uint8_t Byte(size_t i) { return static_cast<uint8_t>((i * 131 + 7) ^ (i >> 9)); }

// The child: serves a region until its parent closes the pipe. Exits, never returns.
[[noreturn]] void Serve(const ContextOptions& options, int to_parent, int from_parent) {
  auto context = Context::Create({options.tls, options.net_devices, /*wakeup=*/true});
  if (!context.ok()) _exit(10);
  auto worker = Worker::Create(**context);
  if (!worker.ok()) _exit(11);
  auto region = HostRegion::Allocate(kSlot * kSlots, true);
  if (!region.ok()) _exit(12);
  for (size_t i = 0; i < kSlot * kSlots; ++i) region->data()[i] = std::byte{Byte(i)};
  auto map = MemoryMap::Map(**context, region->data(), region->size());
  if (!map.ok()) _exit(13);
  auto rkey = (*map)->PackRkey();
  auto address = (*worker)->Address();
  if (!rkey.ok() || !address.ok()) _exit(14);
  WriteString(to_parent, *address);
  WriteString(to_parent, *rkey);
  WriteString(to_parent, std::to_string(reinterpret_cast<uintptr_t>(region->data())));
  for (;;) {
    if ((*worker)->Progress() != 0) continue;
    pollfd p = {from_parent, POLLIN, 0};
    if (poll(&p, 1, 0) > 0) _exit(0);  // parent closed the pipe (or wrote): done
    (*worker)->WaitForEvents(absl::Milliseconds(10));
  }
}

class UcxTwoProcessTest : public ::testing::TestWithParam<const char*> {};

TEST_P(UcxTwoProcessTest, GetsPutsAndPeerDeath) {
  const ContextOptions options{GetParam(), "lo", false};
  int up[2], down[2];
  ASSERT_EQ(pipe(up), 0);
  ASSERT_EQ(pipe(down), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(up[0]);
    close(down[1]);
    Serve(options, up[1], down[0]);
  }
  close(up[1]);
  close(down[0]);
  const std::string address = ReadString(up[0]);
  const std::string rkey = ReadString(up[0]);
  const std::string base = ReadString(up[0]);
  ASSERT_FALSE(address.empty()) << "the server child failed to start";

  // Batches with operations in flight when the peer dies must outlive the worker.
  std::vector<std::unique_ptr<OpBatch>> in_flight;
  auto context = Context::Create(options);
  ASSERT_TRUE(context.ok()) << context.status();
  auto worker = Worker::Create(**context);
  ASSERT_TRUE(worker.ok()) << worker.status();
  const bool detect = std::string(GetParam()) == "tcp";
  auto ep = Endpoint::Connect(**worker, address, rkey, std::stoull(base), kSlot * kSlots, detect);
  ASSERT_TRUE(ep.ok()) << ep.status();

  // Random slot list into a staging buffer, checked byte by byte.
  std::mt19937 rng(GetParam()[0]);
  std::vector<uint32_t> slots(40);
  for (uint32_t& s : slots) s = rng() % kSlots;
  auto staging = HostRegion::Allocate(kSlot * slots.size(), true);
  ASSERT_TRUE(staging.ok());
  auto staging_map = MemoryMap::Map(**context, staging->data(), staging->size());
  ASSERT_TRUE(staging_map.ok()) << staging_map.status();
  OpBatch batch;
  for (size_t i = 0; i < slots.size(); ++i) {
    ASSERT_TRUE((*ep)
                    ->Get(staging->data() + i * kSlot, kSlot, uint64_t{slots[i]} * kSlot,
                          (*staging_map)->handle(), &batch)
                    .ok());
  }
  ASSERT_TRUE((*ep)->Wait(&batch, absl::Seconds(20)).ok());
  for (size_t i = 0; i < slots.size(); ++i) {
    for (size_t j = 0; j < kSlot; ++j) {
      ASSERT_EQ(static_cast<uint8_t>(staging->data()[i * kSlot + j]), Byte(slots[i] * kSlot + j))
          << "slot " << slots[i] << " byte " << j;
    }
  }

  // Put, flush, get back.
  std::vector<uint8_t> mine(kSlot), back(kSlot);
  for (size_t j = 0; j < kSlot; ++j) mine[j] = static_cast<uint8_t>(j * 3 + 1);
  OpBatch put;
  ASSERT_TRUE((*ep)->Put(mine.data(), kSlot, 5 * kSlot, nullptr, &put).ok());
  ASSERT_TRUE((*ep)->Flush(&put).ok());
  ASSERT_TRUE((*ep)->Wait(&put, absl::Seconds(20)).ok());
  OpBatch get;
  ASSERT_TRUE((*ep)->Get(back.data(), kSlot, 5 * kSlot, nullptr, &get).ok());
  ASSERT_TRUE((*ep)->Wait(&get, absl::Seconds(20)).ok());
  EXPECT_EQ(back, mine);

  EXPECT_EQ((*ep)->Get(back.data(), kSlot, kSlots * kSlot, nullptr, &get).code(),
            absl::StatusCode::kOutOfRange);

  // Kill the server: reads must fail or time out, never hang.
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  absl::Status last;
  const absl::Time start = absl::Now();
  for (int round = 0; round < 50 && last.ok(); ++round) {
    in_flight.push_back(std::make_unique<OpBatch>());
    last = (*ep)->Get(back.data(), kSlot, 0, nullptr, in_flight.back().get());
    if (last.ok()) last = (*ep)->Wait(in_flight.back().get(), absl::Seconds(2));
  }
  std::cerr << GetParam() << ": after the server died: " << last << " after "
            << absl::FormatDuration(absl::Now() - start) << "\n";
  EXPECT_FALSE(last.ok());
  close(up[0]);
  close(down[1]);
}

INSTANTIATE_TEST_SUITE_P(Transports, UcxTwoProcessTest, ::testing::Values("tcp", "sm"));

}  // namespace
}  // namespace apr::kvstore::ucx
