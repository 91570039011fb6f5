// What the GPU benchmarks share: die-on-error checks (a benchmark has nobody to return an
// error to), the Llama-3.1-8B geometry of DESIGN.md section 5, flag lists, medians.
#ifndef APRUNTIME_BENCH_BENCH_UTIL_H_
#define APRUNTIME_BENCH_BENCH_UTIL_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/model_config.h"

#define BENCH_CHECK_OK(expr)                                                          \
  do {                                                                                \
    if (absl::Status _s = (expr); !_s.ok()) {                                         \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, _s.ToString().c_str()); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)
#define BENCH_CHECK_CUDA(expr)                                                         \
  do {                                                                                 \
    if (cudaError_t _e = (expr); _e != cudaSuccess) {                                  \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(_e)); \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

namespace apr::bench {

// Llama-3.1-8B (GQA 32/8, head_dim 128, Llama-3 RoPE scaling) with `layers` layers.
ModelConfig Llama31_8B(int64_t max_positions, int64_t layers = 32);

// "1,8,32" -> {1, 8, 32}; exits naming `flag` on an entry that is not a positive integer.
std::vector<int> PositiveInts(const std::string& flag, const std::string& list);

// The upper median (the element at size / 2 once sorted); 0 for no samples.
double Median(std::vector<double> v);

}  // namespace apr::bench

#endif  // APRUNTIME_BENCH_BENCH_UTIL_H_
