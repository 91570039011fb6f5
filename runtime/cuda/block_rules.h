// Which KV blocks a decode step attends to, as plain arithmetic shared by host code, the
// CUDA kernels and the tests (docs/ARCHITECTURE.md, docs/CUDA.md). Everything here is a
// pure function of the context length and the budget, so the CPU tests cover it.
//
// Terms. `len` is the context length of the step being decoded (the new token included).
// Blocks are 16 tokens; block b holds tokens [16b, 16b + 16). The sink is blocks [0, 4)
// (tokens 0-63); the local window is the blocks holding tokens [len - 64, len). The
// *candidates* are the blocks between the two, [4, FirstLocalBlock(len)): the predictor's
// image has one column per candidate, and the top `PredictedBlocks(budget)` of them are
// attended besides sink and local window. When fewer than 3 candidates remain, or no more
// than the predicted budget, every candidate is kept (no prediction).
#ifndef APRUNTIME_RUNTIME_CUDA_BLOCK_RULES_H_
#define APRUNTIME_RUNTIME_CUDA_BLOCK_RULES_H_

#include <cstdint>

#if defined(__CUDACC__)
#define APR_HD __host__ __device__ __forceinline__
#else
#define APR_HD inline
#endif

namespace apr::cuda {

constexpr int kBlockTokens = 16;
constexpr int kSinkBlocks = 4;
constexpr int kLocalTokens = 64;
constexpr int kHistoryRows = 64;
// The history ring keeps a few rows more than the 64-row window, so the row that just left
// the window is still there for the predictor's incremental update (predictor_cnn.h).
constexpr int kHistoryRing = 72;
// The predictor keeps everything when fewer candidates than this remain.
constexpr int kMinPredictedCandidates = 3;

APR_HD int CeilDiv(int a, int b) { return (a + b - 1) / b; }
APR_HD int NumBlocks(int len) { return CeilDiv(len, kBlockTokens); }
// The first block of the local window: the block holding token max(len - 64, 0).
APR_HD int FirstLocalBlock(int len) {
  const int t = len - kLocalTokens;
  return (t > 0 ? t : 0) / kBlockTokens;
}
// Candidate blocks are [kSinkBlocks, kSinkBlocks + NumCandidates(len)).
APR_HD int NumCandidates(int len) {
  const int n = FirstLocalBlock(len) - kSinkBlocks;
  return n > 0 ? n : 0;
}
// Predicted blocks in a budget of `budget_tokens` (sink and local window are 128 tokens).
APR_HD int PredictedBlocks(int budget_tokens) {
  const int n = (budget_tokens - 2 * kLocalTokens) / kBlockTokens;
  return n > 0 ? n : 0;
}
// True when the predictor must rank the candidates (otherwise all are kept).
APR_HD bool NeedsPrediction(int len, int k_blocks) {
  const int c = NumCandidates(len);
  return c >= kMinPredictedCandidates && c > k_blocks;
}
// Number of candidates kept: k when predicting, else all of them.
APR_HD int KeptCandidates(int len, int k_blocks) {
  return NeedsPrediction(len, k_blocks) ? k_blocks : NumCandidates(len);
}
// Length of the attended block list: sink + kept candidates + local window (no overlaps).
APR_HD int ListLength(int len, int k_blocks) {
  const int nb = NumBlocks(len), fl = FirstLocalBlock(len);
  const int sink = fl < kSinkBlocks ? fl : kSinkBlocks;
  return sink + KeptCandidates(len, k_blocks) + (nb - fl);
}
// An upper bound of ListLength over all lengths: 4 sink + kept + 5 local blocks (a partial
// tail block makes the 64-token window span 5 blocks).
APR_HD int MaxListLength(int k_blocks) {
  const int kept = k_blocks > kMinPredictedCandidates - 1 ? k_blocks : kMinPredictedCandidates - 1;
  return kSinkBlocks + kept + CeilDiv(kLocalTokens, kBlockTokens) + 1;
}

// Flash-decoding split of a list of `n` entries into at most `splits` contiguous ranges:
// every range but possibly the last has CeilDiv(n, splits) entries; ranges past the end
// are empty. The attention and combine kernels both use this, so they agree.
APR_HD int SplitSize(int n, int splits) { return n > 0 ? CeilDiv(n, splits) : 1; }
APR_HD int UsedSplits(int n, int splits) { return n > 0 ? CeilDiv(n, SplitSize(n, splits)) : 0; }

// The number of splits per (sequence, KV head) for a launch: as many CTAs as are resident
// at once (`ctas_per_sm` per multiprocessor: one wave, no straggling partial second wave),
// but no split shorter than `min_blocks_per_split` blocks (one per warp).
inline int ChooseSplits(int batch, int kv_heads, int max_entries, int num_sms,
                        int ctas_per_sm = 3, int min_blocks_per_split = 4) {
  const int rows = batch * kv_heads;
  int s = num_sms * ctas_per_sm / (rows > 0 ? rows : 1);
  const int cap = CeilDiv(max_entries > 0 ? max_entries : 1, min_blocks_per_split);
  if (s > cap) s = cap;
  return s < 1 ? 1 : s;
}

}  // namespace apr::cuda

#endif  // APRUNTIME_RUNTIME_CUDA_BLOCK_RULES_H_
