#include "cluster/serving.h"

#include <signal.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace apr::cluster {

absl::Status WriteReadyFile(const std::string& path, const std::map<std::string, int>& values) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [k, v] : values) out << k << "=" << v << "\n";
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, int>> ReadReadyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no ready file ", path));
  std::map<std::string, int> values;
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    int v = 0;
    if (eq == std::string::npos || !absl::SimpleAtoi(line.substr(eq + 1), &v)) {
      return absl::DataLossError(absl::StrCat(path, ": bad line \"", line, "\""));
    }
    values[line.substr(0, eq)] = v;
  }
  return values;
}

namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set = TerminationSignals();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

}  // namespace apr::cluster
