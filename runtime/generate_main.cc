// generate: text generation from a Hugging Face Llama-family model folder, printing tokens
// as they are produced and a closing line with the speed.
//
//   bazel run //runtime:generate -- --prompt "def fibonacci(n):"
//   generate --model /path/to/model --prompt_file p.txt --temperature 0 --max_tokens 200
//   generate --attention predictor --budget 1024 --prompt_file long.txt
#include <algorithm>
#include <cstdio>
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
#include "predictor/cnn.h"
#include "predictor/policy.h"
#include "runtime/cpu/cpu_decoder.h"
#include "runtime/generation.h"
#include "runtime/model_path.h"
#include "runtime/prompt_input.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "models/apr-tiny",
          "model folder (config.json, *.safetensors, tokenizer.json)");
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
          "predictor-mean, predictor-nocal, streaming, h2o, snapkv, quest, oracle); "
          "docs/PREDICTOR.md");
ABSL_FLAG(int64_t, budget, 1024,
          "tokens each decode step attends to under a selection policy (sink 64 + local 64 + "
          "16-token blocks)");
ABSL_FLAG(std::string, predictor, "", "predictor weights (default: <model>/predictor.safetensors)");
ABSL_FLAG(int64_t, calibration_step, 5, "predictor calibration period in decode steps");
ABSL_FLAG(bool, echo_prompt, true, "print the prompt before the generated text");

namespace apr {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "generate: %s\n", std::string(s.message()).c_str());
  return 1;
}

absl::StatusOr<std::string> PromptText() {
  return PromptFromFlags(absl::GetFlag(FLAGS_prompt), absl::GetFlag(FLAGS_prompt_file));
}

// The selection policy of --attention (nullptr for full attention); `cnn` keeps the
// predictor's weights alive for it.
absl::StatusOr<std::unique_ptr<predictor::SelectionPolicy>> MakeAttentionPolicy(
    const std::string& model_dir, const ModelConfig& config,
    std::optional<predictor::PredictorCnn>* cnn) {
  const std::string name = absl::GetFlag(FLAGS_attention);
  if (name == "full") return nullptr;
  const auto& names = predictor::AllPolicyNames();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --attention \"", name, "\"; one of: ", absl::StrJoin(names, ", ")));
  }
  predictor::PolicyFactoryOptions o;
  o.selection.budget = absl::GetFlag(FLAGS_budget);
  o.dims = predictor::DimsOf(config);
  o.calibration_step = absl::GetFlag(FLAGS_calibration_step);
  if (absl::Status s = predictor::ValidateSelectionConfig(o.selection); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--budget: ", s.message()));
  }
  if (name.rfind("predictor", 0) == 0) {
    std::string path = absl::GetFlag(FLAGS_predictor);
    path = path.empty() ? model_dir + "/predictor.safetensors" : ResolveUserPath(path);
    auto loaded = predictor::PredictorCnn::Load(path);
    if (!loaded.ok()) return loaded.status();
    cnn->emplace(*std::move(loaded));
    o.cnn = &**cnn;
  }
  return predictor::MakePolicy(name, o);
}

std::string AttentionLabel() {
  const std::string name = absl::GetFlag(FLAGS_attention);
  return name == "full" ? name : absl::StrCat(name, " ", absl::GetFlag(FLAGS_budget), "-token");
}

int Main() {
  const std::string dir = ResolveModelDir(absl::GetFlag(FLAGS_model));
  auto prompt = PromptText();
  if (!prompt.ok()) return Fail(prompt.status());
  auto tokenizer = Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  auto decoder = cpu::CpuDecoder::Load(dir);
  if (!decoder.ok()) return Fail(decoder.status());

  std::optional<predictor::PredictorCnn> cnn;
  auto policy = MakeAttentionPolicy(dir, (*decoder)->config(), &cnn);
  if (!policy.ok()) return Fail(policy.status());

  GenerationOptions opts;
  opts.max_new_tokens = absl::GetFlag(FLAGS_max_tokens);
  opts.sampling = {absl::GetFlag(FLAGS_temperature), absl::GetFlag(FLAGS_top_k),
                   absl::GetFlag(FLAGS_top_p), absl::GetFlag(FLAGS_seed)};
  if (!absl::GetFlag(FLAGS_ignore_eos)) {
    for (int64_t id : (*decoder)->config().eos_token_ids)
      opts.stop_token_ids.push_back(static_cast<int32_t>(id));
  }
  const std::vector<int32_t> ids = (*tokenizer)->Encode(*prompt, /*add_special_tokens=*/true);
  if (ids.empty()) return Fail(absl::InvalidArgumentError("the prompt encodes to no tokens"));
  if (absl::GetFlag(FLAGS_echo_prompt)) std::fputs(prompt->c_str(), stdout);
  std::fflush(stdout);

  StreamDecoder text(**tokenizer);
  auto seq = (*decoder)->NewSequence(policy->get());
  auto result = Generate(**decoder, *seq, ids, opts, [&](int32_t token) {
    std::fputs(text.Push(token).c_str(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputs(text.Flush().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);  // the closing line on stderr must come after the text
  if (!result.ok()) return Fail(result.status());
  const double n = static_cast<double>(result->tokens.size());
  std::fprintf(
      stderr, "%s\n",
      absl::StrFormat(
          "[%s, %s attention, %d prompt tokens at %.0f tok/s, %d generated at %.1f tok/s, "
          "stop: %s]",
          (*decoder)->device(), AttentionLabel(), result->prompt_tokens,
          result->prompt_tokens / std::max(result->prefill_seconds, 1e-9), result->tokens.size(),
          n / std::max(result->decode_seconds, 1e-9), StopReasonName(result->stop))
          .c_str());
  return 0;
}

}  // namespace
}  // namespace apr

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Generates text from a Llama-family model folder on the CPU, printing tokens as they come.\n"
      "  generate --prompt \"def fib(n):\" [--model models/apr-tiny] [--temperature 0] "
      "[--max_tokens 200] [--attention predictor --budget 1024]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "generate: unexpected argument '%s' (flags take --name=value)\n", rest[1]);
    return 2;
  }
  return apr::Main();
}
