// generate: text generation from a Hugging Face Llama-family model folder on the CPU or a
// GPU, printing tokens on stdout as they are produced; the load time, prefill progress and
// a closing line with the speed go to stderr.
//
//   bazel run //cli:generate -- --prompt "def fibonacci(n):"
//   generate --model /path/to/model --prompt_file p.txt --temperature 0 --max_tokens 200
//   generate --device cuda:0 --attention predictor --budget 1024 --prompt_file long.txt
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/generate_setup.h"
#include "cluster/devices.h"
#include "predictor/cnn.h"
#include "predictor/policy.h"
#include "runtime/algorithm_constants.h"
#include "runtime/generation.h"
#include "runtime/model_config.h"
#include "runtime/model_path.h"
#include "runtime/prompt_input.h"
#include "runtime/step_engine.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "models/apr-tiny",
          "model folder (config.json, *.safetensors, tokenizer.json)");
ABSL_FLAG(std::string, device, "cpu",
          "cpu, cuda:N (the N-th GPU: the CUDA decoder, bf16) or auto (cuda:0 when there is a "
          "GPU)");
ABSL_FLAG(std::string, prompt, "", "prompt text");
ABSL_FLAG(std::string, prompt_file, "", "read the prompt from this file instead");
ABSL_FLAG(int64_t, max_tokens, 128, "most tokens to generate");
ABSL_FLAG(float, temperature, 0.7f, "sampling temperature; 0 for greedy");
ABSL_FLAG(int32_t, top_k, 0, "sample from the k most likely tokens (0: all)");
ABSL_FLAG(float, top_p, 0.95f,
          "sample from the smallest set holding this much probability (1: all)");
ABSL_FLAG(uint64_t, seed, 1, "random seed for sampling");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past the model's end-of-sequence tokens");
ABSL_FLAG(std::string, attention, "full",
          "decode attention: full, or a block-selection policy (predictor, predictor-quest, "
          "predictor-mean, predictor-center, predictor-hybrid, predictor-nocal, streaming, h2o, "
          "snapkv, quest, oracle); on a GPU: full, predictor, predictor-center, "
          "predictor-hybrid, predictor-nocal; docs/PREDICTOR.md");
ABSL_FLAG(int64_t, budget, 1024,
          "tokens each decode step attends to under a selection policy (sink 64 + local 64 + "
          "16-token blocks)");
ABSL_FLAG(std::string, predictor, "", "predictor weights (default: <model>/predictor.safetensors)");
ABSL_FLAG(int64_t, calibration_step, 5, "predictor calibration period in decode steps");
ABSL_FLAG(int64_t, prefill_chunk, 8192,
          "prompt tokens per prefill call; a longer prompt shows its progress on stderr after "
          "each (0: one call)");
ABSL_FLAG(bool, echo_prompt, true, "print the prompt before the generated text");
ABSL_FLAG(std::string, token_ids_file, "",
          "also write the generated token ids here, one per line (to compare devices)");

namespace apr {
namespace {

using Clock = std::chrono::steady_clock;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "generate: %s\n", std::string(s.message()).c_str());
  return 1;
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

generate::AttentionFlags AttentionFromFlags() {
  generate::AttentionFlags a;
  a.name = absl::GetFlag(FLAGS_attention);
  a.budget = absl::GetFlag(FLAGS_budget);
  a.calibration_step = absl::GetFlag(FLAGS_calibration_step);
  const std::string path = absl::GetFlag(FLAGS_predictor);
  a.predictor_path = path.empty() ? "" : ResolveUserPath(path);
  return a;
}

// The CPU decoder's selection policy for --attention (nullptr for full attention); `cnn`
// keeps the predictor's weights alive for it.
absl::StatusOr<std::unique_ptr<predictor::SelectionPolicy>> MakeAttentionPolicy(
    const std::string& model_dir, const ModelConfig& config,
    std::optional<predictor::PredictorCnn>* cnn) {
  const generate::AttentionFlags a = AttentionFromFlags();
  if (a.name == "full") return nullptr;
  const auto& names = predictor::AllPolicyNames();
  if (std::find(names.begin(), names.end(), a.name) == names.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --attention \"", a.name, "\"; one of: ", absl::StrJoin(names, ", ")));
  }
  predictor::PolicyFactoryOptions o;
  o.selection.budget = a.budget;
  o.dims = predictor::DimsOf(config);
  o.calibration_step = a.calibration_step;
  if (absl::Status s = predictor::ValidateSelectionConfig(o.selection); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--budget: ", s.message()));
  }
  if (a.name.rfind("predictor", 0) == 0) {
    const std::string path =
        a.predictor_path.empty() ? model_dir + "/predictor.safetensors" : a.predictor_path;
    auto loaded = predictor::PredictorCnn::Load(path);
    if (!loaded.ok()) return loaded.status();
    cnn->emplace(*std::move(loaded));
    o.cnn = &**cnn;
  }
  return predictor::MakePolicy(a.name, o);
}

std::string AttentionLabel() {
  const std::string name = absl::GetFlag(FLAGS_attention);
  return name == "full" ? name : absl::StrCat(name, " ", absl::GetFlag(FLAGS_budget), "-token");
}

// What Main sets up before generating: the decoder on its device and, on the CPU, the
// selection policy its sequence uses (the CUDA decoder selects on its own).
struct Loaded {
  std::optional<predictor::PredictorCnn> cnn;
  std::unique_ptr<predictor::SelectionPolicy> policy;
  std::unique_ptr<Decoder> decoder;
};

// Opens the model on `device` through the worker's path (cluster/devices.h OpenDecoder),
// sized for one sequence of at most `context` tokens, with the load time on stderr.
absl::Status Load(const std::string& dir, const std::string& device, int64_t context, Loaded* out) {
  auto config = LoadModelConfig(dir + "/config.json");
  if (!config.ok()) return config.status();
  cluster::DecoderOptions options;
  options.max_sequences = 1;
  // The KV pool for this prompt and its tokens rather than the model's whole context (a
  // large model's 128K would take GPU memory for nothing), in whole 4K steps so that the
  // decoder is sized like a served worker's (the CPU decoder ignores it).
  constexpr int64_t kContextStep = 4096;
  options.max_context = std::min((context + kContextStep - 1) / kContextStep * kContextStep,
                                 config->max_position_embeddings);
  if (device == "cpu") {
    auto policy = MakeAttentionPolicy(dir, *config, &out->cnn);
    if (!policy.ok()) return policy.status();
    out->policy = *std::move(policy);
  } else {
    absl::Status s = generate::ApplyAttentionToCuda(AttentionFromFlags(), device, &options);
    if (!s.ok()) return s;
  }
  auto line = generate::LoadingLine(dir);
  if (!line.ok()) return line.status();
  std::fprintf(stderr, "%s on %s ... ", line->c_str(), device.c_str());
  std::fflush(stderr);
  const auto t0 = Clock::now();
  auto decoder = cluster::OpenDecoder(device, dir, options);
  if (!decoder.ok()) {
    std::fprintf(stderr, "failed\n");
    return decoder.status();
  }
  std::fprintf(stderr, "done in %.1f s\n", SecondsSince(t0));
  out->decoder = *std::move(decoder);
  return absl::OkStatus();
}

absl::StatusOr<std::string> DeviceFromFlags() {
  auto device = generate::ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return device.status();
  const std::string d = cluster::ResolveDevice(*device);
  if (d == "cpu") return d;
  absl::Status s = generate::CheckDeviceExists(d, cluster::CudaDeviceCount());
  if (!s.ok()) return s;
  return d;
}

GenerationOptions GenerationFromFlags(const ModelConfig& config) {
  GenerationOptions opts;
  opts.max_new_tokens = absl::GetFlag(FLAGS_max_tokens);
  opts.sampling = {absl::GetFlag(FLAGS_temperature), absl::GetFlag(FLAGS_top_k),
                   absl::GetFlag(FLAGS_top_p), absl::GetFlag(FLAGS_seed)};
  if (!absl::GetFlag(FLAGS_ignore_eos)) {
    for (int64_t id : config.eos_token_ids) opts.stop_token_ids.push_back(static_cast<int32_t>(id));
  }
  return opts;
}

absl::Status WriteTokenIds(const std::vector<int32_t>& tokens) {
  const std::string path = absl::GetFlag(FLAGS_token_ids_file);
  if (path.empty()) return absl::OkStatus();
  std::ofstream out(path);
  for (int32_t t : tokens) out << t << "\n";
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

void PrintSummary(const std::string& device, const GenerationResult& r) {
  const double n = static_cast<double>(r.tokens.size());
  std::fprintf(stderr, "%s\n",
               absl::StrFormat("[%s, %s attention, %d prompt tokens at %.0f tok/s, %d generated "
                               "at %.1f tok/s, stop: %s]",
                               device, AttentionLabel(), r.prompt_tokens,
                               r.prompt_tokens / std::max(r.prefill_seconds, 1e-9), r.tokens.size(),
                               n / std::max(r.decode_seconds, 1e-9), StopReasonName(r.stop))
                   .c_str());
}

int Main() {
  const std::string dir = ResolveModelDir(absl::GetFlag(FLAGS_model));
  auto device = DeviceFromFlags();
  if (!device.ok()) return Fail(device.status());
  auto prompt = PromptFromFlags(absl::GetFlag(FLAGS_prompt), absl::GetFlag(FLAGS_prompt_file));
  if (!prompt.ok()) return Fail(prompt.status());
  auto tokenizer = Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  const std::vector<int32_t> ids = (*tokenizer)->Encode(*prompt, /*add_special_tokens=*/true);
  if (ids.empty()) return Fail(absl::InvalidArgumentError("the prompt encodes to no tokens"));
  Loaded loaded;
  const int64_t context = static_cast<int64_t>(ids.size()) + absl::GetFlag(FLAGS_max_tokens);
  if (absl::Status s = Load(dir, *device, context, &loaded); !s.ok()) return Fail(s);
  Decoder& decoder = *loaded.decoder;

  // The worker's engine (cluster/worker_service.cc), its sequence given the CPU policy.
  DecoderStepEngineOptions engine_options;
  engine_options.new_sequence = [&](uint64_t) -> absl::StatusOr<OwnedSequence> {
    return OwnedSequence{nullptr, decoder.NewSequence(loaded.policy.get())};
  };
  DecoderStepEngine engine(decoder, std::move(engine_options));
  // As a worker asked for no logits: greedy steps bring back only the pick (on a GPU, the
  // arg max taken in the step), the served stream's path.
  engine.set_keep_logits(false);
  generate::EngineGeneration run;
  run.generation = GenerationFromFlags(decoder.config());
  run.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  // A policy shown more prompt rows than the last part holds (H2O: all of them, in one
  // ObservePrefill) needs the prompt in one call.
  if (loaded.policy != nullptr && loaded.policy->PrefillRowsWanted() > kHistoryRows) {
    run.prefill_chunk = 0;
  }
  const auto t0 = Clock::now();
  run.on_prefill = [&](int64_t done, int64_t total) {
    if (total <= absl::GetFlag(FLAGS_prefill_chunk)) return;  // a short prompt: no progress
    std::fprintf(stderr, "prefill %lld/%lld tokens (%.1f s)\n", static_cast<long long>(done),
                 static_cast<long long>(total), SecondsSince(t0));
  };
  if (absl::GetFlag(FLAGS_echo_prompt)) std::fputs(prompt->c_str(), stdout);
  std::fflush(stdout);
  StreamDecoder text(**tokenizer);
  auto result = generate::GenerateOnEngine(engine, ids, run, [&](int32_t token) {
    std::fputs(text.Push(token).c_str(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputs(text.Flush().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);  // the closing line on stderr must come after the text
  if (!result.ok()) return Fail(result.status());
  if (absl::Status s = WriteTokenIds(result->tokens); !s.ok()) return Fail(s);
  PrintSummary(decoder.device(), *result);
  return 0;
}

}  // namespace
}  // namespace apr

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Generates text from a Llama-family model folder on the CPU or a GPU, printing tokens as "
      "they come.\n"
      "  generate --prompt \"def fib(n):\" [--model models/apr-tiny] [--device cuda:0] "
      "[--temperature 0] [--max_tokens 200] [--attention predictor --budget 1024]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "generate: unexpected argument '%s' (flags take --name=value)\n", rest[1]);
    return 2;
  }
  return apr::Main();
}
