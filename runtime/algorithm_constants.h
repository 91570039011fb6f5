// The attention predictor method's constants (docs/DESIGN.md section 2), in one place for
// the CPU reference, the CUDA backend, the storage tier and the predictor. Plain constexpr
// values, usable in CUDA device code too.
#ifndef APRUNTIME_RUNTIME_ALGORITHM_CONSTANTS_H_
#define APRUNTIME_RUNTIME_ALGORITHM_CONSTANTS_H_

namespace apr {

// Tokens per KV block: the unit the history pools over, the predictor scores, the storage
// tier stores and the GPU fetches.
inline constexpr int kBlockTokens = 16;
// The first kSinkTokens tokens (attention sinks) and the last kLocalTokens (the local
// window) are attended at every step, outside the predictor's choice.
inline constexpr int kSinkTokens = 64;
inline constexpr int kLocalTokens = 64;
// Rows of attention history the predictor reads (decode steps, oldest first).
inline constexpr int kHistoryRows = 64;
// Tokens a sparse step attends per KV head unless configured: sink + local window +
// (budget - sink - local) / kBlockTokens predicted blocks.
inline constexpr int kDefaultBudgetTokens = 1024;
// Every n-th decode step records the full attention row in the history.
inline constexpr int kDefaultCalibrationStep = 5;

static_assert(kSinkTokens % kBlockTokens == 0 && kLocalTokens % kBlockTokens == 0,
              "sink and local window are whole blocks");

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_ALGORITHM_CONSTANTS_H_
