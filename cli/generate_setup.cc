#include "cli/generate_setup.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "predictor/policy.h"
#include "predictor/selection.h"
#include "runtime/safetensors.h"
#include "runtime/scheduler.h"

namespace apr::generate {
namespace {

constexpr uint64_t kSequenceId = 1;  // the one sequence generate runs

// The policy names `generate` knows: "full" and every selection policy.
bool KnownAttention(const std::string& name) {
  const auto& names = predictor::AllPolicyNames();
  return name == "full" || std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

absl::StatusOr<std::string> ParseDevice(const std::string& flag) {
  if (flag == "cpu" || flag == "auto") return flag;
  int index = -1;
  if (absl::StartsWith(flag, "cuda:") && absl::SimpleAtoi(flag.substr(5), &index) && index >= 0 &&
      flag.find_first_not_of("0123456789", 5) == std::string::npos) {
    return absl::StrCat("cuda:", index);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--device \"", flag,
                   "\": expected cpu, cuda:N (the N-th GPU, from 0) or auto (cuda:0 when "
                   "there is a GPU, else cpu)"));
}

absl::Status CheckDeviceExists(const std::string& device, int gpu_count) {
  if (!absl::StartsWith(device, "cuda:")) return absl::OkStatus();
  int index = -1;
  if (!absl::SimpleAtoi(device.substr(5), &index) || index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--device ", device, ": not cuda:N"));
  }
  if (gpu_count <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--device ", device,
                     ": this machine has no GPU (no CUDA device visible); use --device cpu"));
  }
  if (index >= gpu_count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--device ", device, ": this machine has ", gpu_count, gpu_count == 1 ? " GPU" : " GPUs",
        gpu_count == 1 ? " (cuda:0)" : absl::StrCat(" (cuda:0 to cuda:", gpu_count - 1, ")")));
  }
  return absl::OkStatus();
}

const std::vector<std::string>& CudaAttentionNames() {
  static const auto* names =
      new std::vector<std::string>{"full", "predictor", "predictor-center", "predictor-hybrid",
                                   "predictor-nocal"};
  return *names;
}

absl::Status ApplyAttentionToCuda(const AttentionFlags& flags, const std::string& device,
                                  cluster::DecoderOptions* options) {
  using Sparse = cluster::DecoderOptions::Sparse;
  const std::string& name = flags.name;
  if (!KnownAttention(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --attention \"", name, "\"; one of: full, ",
                     absl::StrJoin(predictor::AllPolicyNames(), ", ")));
  }
  const auto& gpu = CudaAttentionNames();
  if (std::find(gpu.begin(), gpu.end(), name) == gpu.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--attention ", name,
        " is a CPU policy (it selects through the CPU decoder's attention "
        "hooks); the CUDA decoder on ",
        device, " runs --attention ", absl::StrJoin(gpu, ", "), "; use --device cpu for ", name));
  }
  if (name == "full") {
    options->sparse = Sparse::kOff;
    return absl::OkStatus();
  }
  predictor::SelectionConfig selection;
  selection.budget = flags.budget;
  if (absl::Status s = predictor::ValidateSelectionConfig(selection); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--budget: ", s.message()));
  }
  if (flags.calibration_step < 0) {
    return absl::InvalidArgumentError("--calibration_step must be >= 0");
  }
  options->sparse = Sparse::kOn;
  options->budget_tokens = static_cast<int>(flags.budget);
  options->predictor_path = flags.predictor_path;
  // predictor-hybrid calibrates from the exact row, as the CPU policy of that name does.
  options->full_row_calibration = name == "predictor" || name == "predictor-hybrid";
  options->hybrid = name == "predictor-hybrid";
  options->calibration_step =
      name == "predictor-nocal" ? 0 : static_cast<int>(flags.calibration_step);
  return absl::OkStatus();
}

absl::StatusOr<std::string> LoadingLine(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // predictor.safetensors is the attention predictor's, not the model's.
    if (e.path().extension() == ".safetensors" && name != "predictor.safetensors") {
      files.push_back(e.path().string());
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat(dir, ": ", ec.message()));
  int64_t tensors = 0;
  double bytes = 0;
  for (const std::string& f : files) {
    auto file = SafetensorsFile::Open(f);
    if (!file.ok()) return file.status();
    tensors += static_cast<int64_t>((*file)->tensors().size());
    for (const TensorView& t : (*file)->tensors()) bytes += static_cast<double>(t.nbytes);
  }
  return absl::StrFormat("loading %s: %d tensors, %.2f GiB", dir, tensors,
                         bytes / (1024.0 * 1024.0 * 1024.0));
}

std::vector<int64_t> PrefillPartEnds(int64_t prompt_tokens, int64_t chunk) {
  std::vector<int64_t> ends;
  int64_t done = 0;
  while (done < prompt_tokens) {
    done = NextPromptPartEnd(prompt_tokens, done, std::max<int64_t>(chunk, 0));
    ends.push_back(done);
  }
  return ends;
}

absl::StatusOr<GenerationResult> GenerateOnEngine(StepEngine& engine,
                                                  absl::Span<const int32_t> prompt,
                                                  const EngineGeneration& options,
                                                  const std::function<bool(int32_t)>& on_token) {
  const GenerationOptions& g = options.generation;
  APR_RETURN_IF_ERROR(ValidateSamplingParams(g.sampling));
  if (g.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 0, got ", g.max_new_tokens));
  }
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  using Clock = std::chrono::steady_clock;
  GenerationResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  const auto t0 = Clock::now();
  int32_t token = kPromptContinues;
  int64_t done = 0;
  const std::vector<int64_t> ends = PrefillPartEnds(r.prompt_tokens, options.prefill_chunk);
  for (size_t i = 0; i < ends.size(); ++i) {
    const PromptPart part{i == 0, i + 1 == ends.size()};
    auto t = engine.StartPart(kSequenceId, prompt.subspan(done, ends[i] - done), g.sampling, part);
    if (!t.ok()) {
      engine.Free({kSequenceId});
      return t.status();
    }
    token = *t;
    done = ends[i];
    if (options.on_prefill) options.on_prefill(done, r.prompt_tokens);
  }
  const auto t1 = Clock::now();
  r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  // Generate's loop, with the engine's sampled token in place of Sampler::Sample.
  absl::Status failed;
  while (static_cast<int64_t>(r.tokens.size()) < g.max_new_tokens) {
    r.tokens.push_back(token);
    if (on_token && !on_token(token)) {
      r.stop = StopReason::kCancelled;
      break;
    }
    if (std::find(g.stop_token_ids.begin(), g.stop_token_ids.end(), token) !=
        g.stop_token_ids.end()) {
      r.stop = StopReason::kStopToken;
      break;
    }
    if (static_cast<int64_t>(r.tokens.size()) == g.max_new_tokens) break;
    // The last token is not yet in the cache: the sequence holds prompt + n - 1 tokens.
    if (r.prompt_tokens + static_cast<int64_t>(r.tokens.size()) - 1 >= engine.max_context()) {
      r.stop = StopReason::kContextFull;
      break;
    }
    auto next = engine.Step({kSequenceId}, {token});
    if (!next.ok()) {
      failed = next.status();
      break;
    }
    token = next->front();
  }
  engine.Free({kSequenceId});
  if (!failed.ok()) return failed;
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace apr::generate
