// Sequence ids in a shared storage node (issue 19 item 5 c): workers in containers are all
// pid 1, so ids salted with the process id collided. kvstore::NewTierSequenceId draws a
// random base per process; here several real processes that are each pid 1 (each in its
// own PID namespace, as in a container) draw their first ids, which must all differ.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "kvstore/client/tier_client.h"

namespace {

struct Child {
  pid_t pid;
  int fd;
};

// Forks a process (pid 1 of a new PID namespace when the caller unshared one) that
// writes its own pid and NewTierSequenceId(0) to a pipe.
Child Spawn() {
  int p[2];
  if (pipe(p) != 0) return {-1, -1};
  const pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    const uint64_t out[2] = {static_cast<uint64_t>(getpid()), apr::kvstore::NewTierSequenceId(0)};
    const bool ok = write(p[1], out, sizeof out) == sizeof out;
    _exit(ok ? 0 : 1);
  }
  close(p[1]);
  return {pid, p[0]};
}

TEST(TierSequenceIdTest, ProcessesThatAreAllPid1GetDistinctIds) {
  // A child of this process unshares a PID namespace; its children are then pid 1 of new
  // namespaces one after another (each namespace's first process).
  constexpr int kProcesses = 16;
  std::vector<uint64_t> pids, ids;
  for (int i = 0; i < kProcesses; ++i) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    const pid_t helper = fork();
    ASSERT_GE(helper, 0);
    if (helper == 0) {
      close(p[0]);
      if (unshare(CLONE_NEWPID) != 0) _exit(77);
      Child c = Spawn();
      uint64_t got[2] = {0, 0};
      const bool ok = c.fd >= 0 && read(c.fd, got, sizeof got) == sizeof got;
      int status = 0;
      waitpid(c.pid, &status, 0);
      _exit(ok && write(p[1], got, sizeof got) == sizeof got ? 0 : 1);
    }
    close(p[1]);
    uint64_t got[2] = {0, 0};
    const bool read_ok = read(p[0], got, sizeof got) == sizeof got;
    close(p[0]);
    int status = 0;
    waitpid(helper, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
      GTEST_SKIP() << "unshare(CLONE_NEWPID) is not permitted here: " << std::strerror(EPERM);
    }
    ASSERT_TRUE(read_ok && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pids.push_back(got[0]);
    ids.push_back(got[1]);
  }
  for (uint64_t pid : pids) EXPECT_EQ(pid, 1u) << "the child was not pid 1 of its namespace";
  EXPECT_EQ(std::set<uint64_t>(ids.begin(), ids.end()).size(), ids.size())
      << "two pid-1 processes drew the same sequence id";
}

TEST(TierSequenceIdTest, OneProcessNumbersItsSequencesFromItsBase) {
  const uint64_t first = apr::kvstore::NewTierSequenceId(0);
  EXPECT_EQ(apr::kvstore::NewTierSequenceId(1), first + 1);
  EXPECT_EQ(apr::kvstore::NewTierSequenceId(1000), first + 1000);
  // Not the old scheme (pid << 32 | n), which every pid-1 container shared.
  EXPECT_NE(first >> 32, static_cast<uint64_t>(getpid()));
}

}  // namespace
