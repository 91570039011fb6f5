// launch: starts every process of a cluster config on this host, prints where the front
// end listens, and stops them all on Ctrl-C / SIGTERM.
//
//   bazel run //cluster:launch                      (the embedded local default)
//   launch --config configs/one_gpu.textproto
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "cluster/config.h"
#include "cluster/launcher.h"
#include "cluster/serving.h"
#include "runtime/model_path.h"

ABSL_FLAG(std::string, config, "",
          "cluster config (text format, cluster/config.proto); empty: the embedded local "
          "default, configs/local.textproto");
ABSL_FLAG(std::string, bin_dir, "",
          "directory of the frontend and worker binaries; empty: the launcher's own");
ABSL_FLAG(std::string, ready_file, "",
          "once serving, write the front end's grpc_port and metrics_port here");
ABSL_FLAG(bool, check, false, "check the config and print the processes it starts; start none");

namespace apr::cluster {

extern const char kLocalConfig[];  // configs/local.textproto, compiled in

namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "launch: %s\n", std::string(s.message()).c_str());
  return 1;
}

std::string OwnDirectory() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : self.parent_path().string();
}

int Main() {
  const std::string path = absl::GetFlag(FLAGS_config);
  auto config = path.empty() ? ParseConfig(kLocalConfig, "configs/local.textproto (embedded)")
                             : LoadConfig(ResolveUserPath(path));
  if (!config.ok()) return Fail(config.status());
  LauncherOptions options;
  options.bin_dir = absl::GetFlag(FLAGS_bin_dir).empty()
                        ? OwnDirectory()
                        : ResolveUserPath(absl::GetFlag(FLAGS_bin_dir));
  Launcher launcher(*config, options);

  if (absl::GetFlag(FLAGS_check)) {
    auto plan = launcher.PlanProcesses("RUN_DIR");
    if (!plan.ok()) return Fail(plan.status());
    for (const ProcessSpec& p : *plan) {
      std::printf("%s %s:", p.kind.c_str(), launcher.BinaryFor(p.kind).c_str());
      for (const std::string& f : p.flags) std::printf(" %s", f.c_str());
      std::printf("\n");
    }
    return 0;
  }

  std::fprintf(stderr, "launch: starting cluster \"%s\"\n", config->name().c_str());
  if (absl::Status s = launcher.Start(); !s.ok()) return Fail(s);
  std::printf(
      "launch: cluster \"%s\" is serving; Generation API at %s, metrics at http://%s/metrics\n",
      config->name().c_str(), launcher.frontend_address().c_str(),
      launcher.metrics_address().c_str());
  std::printf("launch: try  bazel run //cluster:generate -- --server %s --prompt \"def f(x):\"\n",
              launcher.frontend_address().c_str());
  std::map<std::string, int> ports = {{"grpc_port", launcher.frontend_port()},
                                      {"metrics_port", launcher.metrics_port()}};
  if (const std::string& oa = launcher.openai_address(); !oa.empty()) {
    std::printf("launch: OpenAI API at http://%s/v1  (curl http://%s/v1/models)\n", oa.c_str(),
                oa.c_str());
    ports["openai_port"] = launcher.openai_port();
  }
  std::fflush(stdout);
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file); !ready.empty()) {
    absl::Status s = WriteReadyFile(ResolveUserPath(ready), ports);
    if (!s.ok()) return Fail(s);
  }

  const int sig = launcher.WaitForSignalOrExit();
  if (sig > 0) {
    std::fprintf(stderr, "launch: %s, stopping the cluster\n", strsignal(sig));
  } else {
    std::fprintf(stderr, "launch: %s; stopping the cluster\n", launcher.failure().c_str());
  }
  absl::Status stopped = launcher.Stop();
  if (!stopped.ok()) return Fail(stopped);
  if (sig < 0) return 1;
  std::fprintf(stderr, "launch: stopped\n");
  return 0;
}

}  // namespace
}  // namespace apr::cluster

int main(int argc, char** argv) {
  apr::cluster::BlockTerminationSignals();
  absl::SetProgramUsageMessage(
      "Starts the processes of a cluster config on this host (front end, workers, storage "
      "nodes) and stops them on Ctrl-C.\n  launch [--config configs/local.textproto]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "launch: unexpected argument '%s'\n", rest[1]);
    return 2;
  }
  return apr::cluster::Main();
}
