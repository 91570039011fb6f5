// The parts of the in-process `generate` CLI (generate_main.cc) below its flags: which
// device --device names, how --attention maps onto the CUDA decoder, the load line, and
// the generation loop itself, which runs on the worker's StepEngine (runtime/step_engine.h)
// so that `generate` samples exactly as a served stream does.
#ifndef APRUNTIME_CLI_GENERATE_SETUP_H_
#define APRUNTIME_CLI_GENERATE_SETUP_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "cluster/devices.h"
#include "runtime/generation.h"
#include "runtime/step_engine.h"

namespace apr::generate {

// --device: "cpu", "auto" (cuda:0 when there is a GPU) or "cuda:N"; anything else is an
// InvalidArgument error saying what is accepted.
absl::StatusOr<std::string> ParseDevice(const std::string& flag);

// Whether `device` (from ParseDevice) exists on a machine with `gpu_count` GPUs:
// "--device cuda:3: this machine has 1 GPU (cuda:0)".
absl::Status CheckDeviceExists(const std::string& device, int gpu_count);

// The --attention choices the CUDA decoder runs: it selects blocks with its own GPU
// predictor and takes no CPU policy hooks (backends/cuda/cuda_decoder.h NewSequence).
const std::vector<std::string>& CudaAttentionNames();

struct AttentionFlags {
  std::string name = "full";  // --attention
  int64_t budget = 1024;      // --budget
  int64_t calibration_step = 5;
  std::string predictor_path;  // --predictor; empty: the model folder's
};

// Sets `options` for --attention on the CUDA decoder: full is dense; predictor calibrates
// from the exact full row, as the CPU policy "predictor"; predictor-center from the key
// summaries (the CPU's kCenterL2 estimate and the served worker's choice);
// predictor-nocal never calibrates. Any other policy: an InvalidArgument error naming it
// and what the GPU runs.
absl::Status ApplyAttentionToCuda(const AttentionFlags& flags, const std::string& device,
                                  cluster::DecoderOptions* options);

// "loading DIR: N tensors, X GiB" over the model's safetensors files (headers only).
absl::StatusOr<std::string> LoadingLine(const std::string& dir);

// Where the prefill calls of a prompt of `prompt_tokens` end: parts of `chunk` tokens, a
// tail shorter than kHistoryRows joined to the part before it (NextPromptPartEnd, the
// scheduler's rule: the predictor's history comes from the last part's rows); chunk 0:
// one call.
std::vector<int64_t> PrefillPartEnds(int64_t prompt_tokens, int64_t chunk);

struct EngineGeneration {
  GenerationOptions generation;
  int64_t prefill_chunk = 0;  // PrefillPartEnds
  // After each prefill part: tokens prefilled so far, of `total`.
  std::function<void(int64_t done, int64_t total)> on_prefill;
};

// Generate (runtime/generation.h) through `engine` as the worker drives it: the prompt's
// parts through StartPart, then one Step per token, the same Sampler; the same stop rules
// and result as Generate. `on_token` returning false cancels.
absl::StatusOr<GenerationResult> GenerateOnEngine(StepEngine& engine,
                                                  absl::Span<const int32_t> prompt,
                                                  const EngineGeneration& options,
                                                  const std::function<bool(int32_t)>& on_token);

}  // namespace apr::generate

#endif  // APRUNTIME_CLI_GENERATE_SETUP_H_
