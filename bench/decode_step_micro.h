// The micro-benchmarks of decode_step_bench (--micro): the projections of one layer and
// lm_head through each GEMV kernel and cuBLAS, and one layer's paged decode attention, each
// kernel timed alone against the HBM read probe.
#ifndef APRUNTIME_BENCH_DECODE_STEP_MICRO_H_
#define APRUNTIME_BENCH_DECODE_STEP_MICRO_H_

#include "backends/cuda/cuda_weights.h"

namespace apr::cuda {

// The projections of one layer and lm_head through the GEMV, and one layer's decode
// attention over a dense 32K context and over a 1024-token block list, alone: achieved
// bandwidth against the read probe.
void MicroBenchmarks(const CudaWeights& w, double read_gbps);

}  // namespace apr::cuda

#endif  // APRUNTIME_BENCH_DECODE_STEP_MICRO_H_
