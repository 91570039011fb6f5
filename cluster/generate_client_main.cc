// generate --server: text generation from a running cluster's front end, printing tokens
// as they stream in and the same closing line as the local generate (runtime/).
//
//   bazel run //cluster:generate -- --server 127.0.0.1:50051 --prompt "def fibonacci(n):"
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cluster/client.h"
#include "runtime/model_path.h"
#include "runtime/prompt_input.h"

// The local generate's flags (cli/generate_main.cc), same names and defaults.
ABSL_FLAG(std::string, server, "", "front end address host:port (required)");
ABSL_FLAG(std::string, prompt, "", "prompt text");
ABSL_FLAG(std::string, prompt_file, "", "read the prompt from this file instead");
ABSL_FLAG(int64_t, max_tokens, 128, "most tokens to generate");
ABSL_FLAG(float, temperature, 0.7f, "sampling temperature; 0 for greedy");
ABSL_FLAG(int32_t, top_k, 0, "sample from the k most likely tokens (0: all)");
ABSL_FLAG(float, top_p, 0.95f,
          "sample from the smallest set holding this much probability (1: all)");
ABSL_FLAG(uint64_t, seed, 1, "random seed for sampling");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past the model's end-of-sequence tokens");
ABSL_FLAG(bool, echo_prompt, true, "print the prompt before the generated text");
ABSL_FLAG(double, timeout_s, 0, "give up after this many seconds (0: no limit)");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA that verifies the front end's certificate; set: connect with TLS");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM client certificate (mutual TLS)");
ABSL_FLAG(std::string, tls_key_file, "", "its private key");
ABSL_FLAG(std::string, tls_server_name, "",
          "name to check in the front end's certificate instead of the host");
ABSL_FLAG(std::string, token_file, "",
          "file whose first line is the bearer token for the front end's auth");

namespace apr::cluster {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "generate: %s\n", std::string(s.message()).c_str());
  return 1;
}

absl::StatusOr<std::string> PromptText() {
  return PromptFromFlags(absl::GetFlag(FLAGS_prompt), absl::GetFlag(FLAGS_prompt_file));
}

int Main() {
  const std::string server = absl::GetFlag(FLAGS_server);
  if (server.empty()) {
    return Fail(absl::InvalidArgumentError(
        "--server host:port is required (for generation in this process use "
        "//cli:generate)"));
  }
  auto prompt = PromptText();
  if (!prompt.ok()) return Fail(prompt.status());
  if (prompt->empty()) return Fail(absl::InvalidArgumentError("the prompt is empty"));

  ::apr::generation::v1::GenerateRequest req;
  req.set_text(*prompt);
  req.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  req.mutable_sampling()->set_temperature(absl::GetFlag(FLAGS_temperature));
  req.mutable_sampling()->set_top_k(absl::GetFlag(FLAGS_top_k));
  req.mutable_sampling()->set_top_p(absl::GetFlag(FLAGS_top_p));
  req.mutable_sampling()->set_seed(absl::GetFlag(FLAGS_seed));
  req.set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  if (absl::GetFlag(FLAGS_max_tokens) == 0) {
    return Fail(absl::InvalidArgumentError("--max_tokens must be > 0 with --server"));
  }

  if (absl::GetFlag(FLAGS_echo_prompt)) std::fputs(prompt->c_str(), stdout);
  std::fflush(stdout);
  TlsConfig tls;
  tls.set_ca_file(absl::GetFlag(FLAGS_tls_ca_file));
  tls.set_cert_file(absl::GetFlag(FLAGS_tls_cert_file));
  tls.set_key_file(absl::GetFlag(FLAGS_tls_key_file));
  tls.set_server_name(absl::GetFlag(FLAGS_tls_server_name));
  auto stub = ConnectGeneration(server, tls);
  if (!stub.ok()) return Fail(stub.status());
  CallOptions call;
  call.timeout_seconds = absl::GetFlag(FLAGS_timeout_s);
  if (const std::string f = absl::GetFlag(FLAGS_token_file); !f.empty()) {
    std::ifstream in(ResolveUserPath(f));
    if (!in || !std::getline(in, call.token) || call.token.empty()) {
      return Fail(absl::NotFoundError(absl::StrCat("cannot read a token from --token_file ", f)));
    }
  }
  auto stats = StreamGenerate(
      **stub, req,
      [](const ::apr::generation::v1::TokenChunk& chunk) {
        std::fputs(chunk.text().c_str(), stdout);
        std::fflush(stdout);
      },
      call);
  std::fputs("\n", stdout);
  std::fflush(stdout);  // the closing line on stderr must come after the text
  if (!stats.ok()) return Fail(stats.status());
  const double n = static_cast<double>(stats->generated_tokens());
  std::fprintf(
      stderr, "%s\n",
      absl::StrFormat("[%s, %d prompt tokens at %.0f tok/s, %d generated at %.1f tok/s, stop: %s]",
                      absl::StrCat(server, " ", stats->worker_group(), " ", stats->device()),
                      stats->prompt_tokens(),
                      stats->prompt_tokens() / std::max(stats->prefill_seconds(), 1e-9),
                      stats->generated_tokens(), n / std::max(stats->decode_seconds(), 1e-9),
                      StopReasonText(stats->stop_reason()))
          .c_str());
  return 0;
}

}  // namespace
}  // namespace apr::cluster

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Generates text on a running cluster (launch), printing tokens as they stream in.\n"
      "  generate --server 127.0.0.1:50051 --prompt \"def fib(n):\" [--temperature 0] "
      "[--max_tokens 200]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "generate: unexpected argument '%s' (flags take --name=value)\n", rest[1]);
    return 2;
  }
  return apr::cluster::Main();
}
