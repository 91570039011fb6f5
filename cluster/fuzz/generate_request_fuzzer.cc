// libFuzzer entry point for what a client sends the front end: bytes parsed as a
// GenerateRequest (protobuf wire format), then the front end's own checks
// (cluster/request_validation.h) and the scheduler's sampling checks. Whatever is
// accepted must be inside the limits and the vocabulary, and its sampler must sample a
// token of the vocabulary. Uses models/apr-tiny (or $APR_FUZZ_MODEL) for the tokenizer
// and config. Built by tools/fuzz/run_fuzzers.sh.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cluster/request_validation.h"
#include "runtime/model_config.h"
#include "runtime/sampling.h"
#include "runtime/tokenizer/tokenizer.h"

namespace {

struct World {
  std::unique_ptr<apr::Tokenizer> tokenizer;
  apr::ModelConfig model;
  apr::cluster::v1::FrontEnd frontend;
  std::vector<float> logits;
};

const World& W() {
  static const World* w = [] {
    const char* env = std::getenv("APR_FUZZ_MODEL");
    const std::string dir = env ? env : "models/apr-tiny";
    auto* w = new World;
    auto tok = apr::Tokenizer::FromFile(dir + "/tokenizer.json");
    auto model = apr::LoadModelConfig(dir + "/config.json");
    if (!tok.ok() || !model.ok()) {
      std::fprintf(stderr, "generate_request_fuzzer: cannot load %s\n", dir.c_str());
      std::exit(2);
    }
    w->tokenizer = std::move(*tok);
    w->model = *model;
    w->frontend.set_default_max_tokens(128);
    w->frontend.mutable_limits()->set_max_prompt_tokens(512);
    w->frontend.mutable_limits()->set_max_new_tokens(256);
    w->logits.resize(w->model.vocab_size);
    for (size_t i = 0; i < w->logits.size(); ++i) w->logits[i] = std::sin(0.37f * i) * 4;
    return w;
  }();
  return *w;
}

void Fail(const char* what) {
  std::fprintf(stderr, "accepted a request that %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ::apr::generation::v1::GenerateRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  const World& w = W();
  auto r = apr::cluster::PrepareRequest(req, *w.tokenizer, w.model, w.frontend);
  if (!r.ok()) return 0;
  if (r->prompt.size() > 512) Fail("is over max_prompt_tokens");
  for (int32_t id : r->prompt) {
    if (id < 0 || id >= w.model.vocab_size) Fail("has a prompt token outside the vocabulary");
  }
  if (r->options.max_new_tokens < 0 || r->options.max_new_tokens > 256) {
    Fail("asks for more than max_new_tokens");
  }
  if (!apr::ValidateSamplingParams(r->options.sampling).ok()) return 0;
  apr::Sampler sampler(r->options.sampling);
  for (int i = 0; i < 3; ++i) {
    const int32_t t = sampler.Sample(w.logits);
    if (t < 0 || t >= w.model.vocab_size) Fail("sampled a token outside the vocabulary");
  }
  return 0;
}
