// The predictor CNN's parameters (docs/ARCHITECTURE.md "Predictor weights") packed in the
// order predictor_cnn.h expects.
#ifndef APRUNTIME_BACKENDS_CUDA_PREDICTOR_PREDICTOR_WEIGHTS_H_
#define APRUNTIME_BACKENDS_CUDA_PREDICTOR_PREDICTOR_WEIGHTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace apr::cuda {

// Reads conv1/conv2/conv3 .weight/.bias from a safetensors file (F32, exact shapes).
absl::StatusOr<std::vector<float>> LoadPredictorWeights(const std::string& path);
// Deterministic random parameters (PyTorch-like uniform(+-1/sqrt(fan_in))) for benchmarks
// and tests.
std::vector<float> RandomPredictorWeights(uint64_t seed);

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_PREDICTOR_PREDICTOR_WEIGHTS_H_
