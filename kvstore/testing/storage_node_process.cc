#include "kvstore/testing/storage_node_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace apr::kvstore::testing {

std::string StorageNodeBinary() {
  if (const char* p = std::getenv("APR_STORAGE_NODE"); p != nullptr && *p != '\0') return p;
  return "kvstore/storage_node";
}

absl::StatusOr<std::unique_ptr<StorageNodeProcess>> StorageNodeProcess::Start(
    const std::string& binary, const std::vector<std::string>& flags,
    absl::Duration ready_timeout) {
  std::vector<std::string> args = {binary, "--grpc_host=127.0.0.1", "--grpc_port=0"};
  args.insert(args.end(), flags.begin(), flags.end());
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    std::fprintf(stderr, "cannot execute %s: %s\n", binary.c_str(), strerror(errno));
    _exit(127);
  }
  close(out[1]);
  std::unique_ptr<StorageNodeProcess> p(new StorageNodeProcess());
  p->pid_ = pid;
  p->stdout_fd_ = out[0];
  const absl::Time deadline = absl::Now() + ready_timeout;
  // Other lines may come first (UCX logs to stdout at UCX_LOG_LEVEL=info and above).
  std::string text;
  auto ready_at = [&text]() -> size_t {
    size_t at = text.rfind("storage_node ready", 0) == 0 ? 0 : text.find("\nstorage_node ready");
    if (at == std::string::npos) return at;
    if (at != 0) ++at;
    return text.find('\n', at) == std::string::npos ? std::string::npos : at;
  };
  while (ready_at() == std::string::npos) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd pf = {out[0], POLLIN, 0};
    if (left <= 0 || poll(&pf, 1, static_cast<int>(left)) <= 0) {
      return absl::DeadlineExceededError(absl::StrCat("storage node (", absl::StrJoin(args, " "),
                                                      ") printed no ready line within ",
                                                      absl::FormatDuration(ready_timeout)));
    }
    char buf[512];
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) {
      int status = 0;
      waitpid(pid, &status, 0);
      p->pid_ = -1;
      return absl::FailedPreconditionError(
          absl::StrCat("storage node (", absl::StrJoin(args, " "), ") exited before it was ready",
                       WIFEXITED(status) ? absl::StrCat(" with code ", WEXITSTATUS(status)) : ""));
    }
    text.append(buf, n);
  }
  const size_t line = ready_at();
  p->ready_line_ = text.substr(line, text.find('\n', line) - line);
  const size_t at = p->ready_line_.find("grpc_port=");
  if (at == std::string::npos) {
    return absl::InternalError(absl::StrCat("no port in the ready line: ", p->ready_line_));
  }
  const std::string rest = p->ready_line_.substr(at + 10);
  if (!absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &p->port_) || p->port_ <= 0) {
    return absl::InternalError(absl::StrCat("no port in: ", p->ready_line_));
  }
  return p;
}

absl::StatusOr<int> StorageNodeProcess::Stop(int signal, absl::Duration timeout) {
  if (pid_ < 0) return absl::FailedPreconditionError("the storage node is not running");
  kill(pid_, signal);
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return status;
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("storage node ", pid_, " did not exit within ",
                       absl::FormatDuration(timeout), " of signal ", signal));
    }
    usleep(10000);
  }
}

StorageNodeProcess::~StorageNodeProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

int FreePortForRestarts() {
  std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = std::uniform_int_distribution<int>(20000, 32000)(rng);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    if (free) return port;
  }
  return 0;
}

}  // namespace apr::kvstore::testing
