#include "tests/reliability/harness.h"

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cluster/serving.h"
#include "httplib.h"

namespace apr::reliability {

namespace fs = std::filesystem;

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t ? t : fs::temp_directory_path().string();
}

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  fs::create_directories(dir);
  TestPki p;
  auto f = [&](const std::string& n) { return (fs::path(dir) / n).string(); };
  p.ca = f("ca.pem");
  p.server_cert = f("server.pem");
  p.server_key = f("server.key");
  p.client_cert = f("client.pem");
  p.client_key = f("client.key");
  p.rogue_ca = f("rogue-ca.pem");
  p.rogue_cert = f("rogue-client.pem");
  p.rogue_key = f("rogue-client.key");
  std::ofstream(f("server.ext")) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  std::ofstream(f("client.ext")) << "extendedKeyUsage=clientAuth\n";
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string script = absl::StrCat(
      "set -e; cd '", dir, "'; exec >openssl.log 2>&1\n",
      // The CA and the rogue CA (self-signed, CA:TRUE from openssl's v3_ca defaults).
      "openssl req -x509 ", ec, " -keyout ca.key -out ca.pem -days 3650 -subj /CN=apr-test-ca\n",
      "openssl req -x509 ", ec,
      " -keyout rogue-ca.key -out rogue-ca.pem -days 3650 -subj /CN=apr-rogue-ca\n",
      // Leaf certificates.
      "openssl req ", ec, " -keyout server.key -out server.csr -subj /CN=localhost\n",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 "
      "-extfile server.ext -out server.pem\n",
      "openssl req ", ec, " -keyout client.key -out client.csr -subj /CN=apr-client\n",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 "
      "-extfile client.ext -out client.pem\n",
      "openssl req ", ec, " -keyout rogue-client.key -out rogue-client.csr -subj /CN=rogue\n",
      "openssl x509 -req -in rogue-client.csr -CA rogue-ca.pem -CAkey rogue-ca.key "
      "-CAcreateserial -days 3650 -extfile client.ext -out rogue-client.pem\n");
  std::ofstream(f("make.sh")) << script;
  const int rc = std::system(absl::StrCat("timeout 60 /bin/sh '", f("make.sh"), "'").c_str());
  if (rc != 0) {
    std::stringstream log;
    log << std::ifstream(f("openssl.log")).rdbuf();
    return absl::InternalError(absl::StrCat("openssl failed (", rc, "): ", log.str()));
  }
  return p;
}

Launch::Launch(const std::string& name, const std::string& config_text) {
  const std::string dir = TmpDir();
  config_ = dir + "/" + name + ".textproto";
  ready_ = dir + "/" + name + ".ready";
  log_ = dir + "/" + name + ".log";
  std::ofstream(config_) << config_text;
  fs::remove(ready_);
  const std::string cmd = absl::StrCat("exec cluster/launch --config=", config_,
                                       " --bin_dir=", fs::absolute("cluster").string(),
                                       " --ready_file=", ready_, " >", log_, " 2>&1");
  auto p = cluster::Process::Start({"/bin/sh", "-c", cmd});
  if (p.ok()) process_.emplace(*p);
}

Launch::~Launch() {
  if (process_ && !process_->exited()) {
    process_->Signal(SIGTERM);
    if (!process_->Wait(absl::Seconds(20))) {
      process_->Signal(SIGKILL);
      process_->Wait(absl::Seconds(10));
    }
  }
}

int Launch::WaitReady(absl::Duration timeout) {
  if (!process_) return 0;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline && !process_->Poll()) {
    auto ports = cluster::ReadReadyFile(ready_);
    if (ports.ok()) {
      metrics_port_ = (*ports)["metrics_port"];
      return (*ports)["grpc_port"];
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return 0;
}

std::string Launch::Log() const {
  std::stringstream ss;
  ss << std::ifstream(log_).rdbuf();
  return ss.str();
}

std::optional<pid_t> Launch::ChildPid(const std::string& needle) const {
  if (!process_) return std::nullopt;
  const std::string parent = std::to_string(process_->pid());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(e.path().filename().string(), &pid)) continue;
    std::stringstream stat;
    stat << std::ifstream(e.path() / "stat").rdbuf();
    // pid (comm) state ppid ...: the fields after the last ')'.
    const std::string s = stat.str();
    const size_t close = s.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> fields = absl::StrSplit(s.substr(close + 2), ' ');
    if (fields.size() < 2 || fields[1] != parent) continue;
    std::stringstream cmd;
    cmd << std::ifstream(e.path() / "cmdline").rdbuf();
    std::string line = cmd.str();
    for (char& c : line) {
      if (c == '\0') c = ' ';
    }
    if (line.find(needle) != std::string::npos) return pid;
  }
  return std::nullopt;
}

std::string LocalConfig(int groups, int max_batch, const std::string& extra,
                        const std::string& frontend_extra, const std::string& launcher_extra) {
  std::string c = absl::StrCat("name: \"reliability\"\n", "model { path: \"",
                               fs::absolute("models/apr-tiny").string(), "\" }\n",
                               "frontend { grpc { host: \"127.0.0.1\" port: 0 } metrics_port: 0\n",
                               frontend_extra, "}\n");
  for (int g = 0; g < groups; ++g) {
    absl::StrAppend(&c, "worker_groups { name: \"g", g,
                    "\" ranks { device: \"cpu\" grpc { host: \"127.0.0.1\" port: 0 } "
                    "metrics_port: 0 } }\n");
  }
  absl::StrAppend(&c, "scheduler { max_batch_size: ", max_batch, " }\n",
                  "launcher { startup_timeout_seconds: 90 stop_timeout_seconds: 10 ",
                  launcher_extra, " }\n", extra);
  return c;
}

double ScrapeMetric(int port, const std::string& name) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(2);
  cli.set_read_timeout(5);
  auto res = cli.Get("/metrics");
  if (!res || res->status != 200) return -1;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &v)) return v;
    }
  }
  return -1;
}

}  // namespace apr::reliability
