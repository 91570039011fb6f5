// Which KV blocks a decode step attends to, as plain arithmetic shared by host code, the
// CUDA kernels and the tests. The rules are the CPU reference's (docs/PREDICTOR.md, "Budget
// and candidates" and "Mirroring on the GPU"); everything here is a pure function of the
// context length and the budget, so the CPU tests cover it.
//
// Terms. `len` (L) is the context length of the step being decoded (the new token
// included). Blocks are 16 tokens; block b holds tokens [16b, 16b + 16). The history seen
// when predicting for the step covers the L - 1 earlier tokens: N = ceil((L - 1) / 16)
// blocks. The *candidates* are blocks [4, N - 4) (sink and local columns cut, as the
// official code cuts the CNN input); the predictor's image has one column per candidate
// and min(k, candidates) of them are chosen (all when they fit; the lowest ones when fewer
// than 3 remain, since the CNN is not run). Attended: the sink tokens [0, min(64, L)), the
// token-exact local window [max(0, L - 64), L), and the chosen blocks. A block list entry
// is (block, first token within the block): the local window's first block is attended from
// token (L - 64) mod 16 unless it is also sink or chosen.
#ifndef APRUNTIME_BACKENDS_CUDA_BLOCK_RULES_H_
#define APRUNTIME_BACKENDS_CUDA_BLOCK_RULES_H_

#include <cstdint>

#include "runtime/algorithm_constants.h"

#if defined(__CUDACC__)
#define APR_HD __host__ __device__ __forceinline__
#else
#define APR_HD inline
#endif

namespace apr::cuda {

// The method's constants live in runtime/algorithm_constants.h; the kernels' names for them.
using ::apr::kBlockTokens;
using ::apr::kHistoryRows;
using ::apr::kLocalTokens;
using ::apr::kSinkTokens;
constexpr int kSinkBlocks = kSinkTokens / kBlockTokens;
// The history ring keeps a few rows more than the 64-row window, so the row that just left
// the window is still there for the predictor's incremental update (predictor_cnn.h).
constexpr int kHistoryRing = 72;
// The predictor keeps everything when fewer candidates than this remain.
constexpr int kMinPredictedCandidates = 3;

APR_HD int CeilDiv(int a, int b) { return (a + b - 1) / b; }
APR_HD int NumBlocks(int len) { return len > 0 ? CeilDiv(len, kBlockTokens) : 0; }
// N: blocks of the history when predicting for a step of context `len`.
APR_HD int HistoryBlocks(int len) { return NumBlocks(len - 1); }
// Candidate blocks are [kSinkBlocks, kSinkBlocks + NumCandidates(len)).
APR_HD int NumCandidates(int len) {
  const int n = HistoryBlocks(len) - kLocalTokens / kBlockTokens - kSinkBlocks;
  return n > 0 ? n : 0;
}
// Blocks holding the sink tokens [0, min(64, len)).
APR_HD int SinkBlocks(int len) { return NumBlocks(len < kSinkTokens ? len : kSinkTokens); }
// First token of the local window [LocalStart, len), and its block.
APR_HD int LocalStart(int len) { return len > kLocalTokens ? len - kLocalTokens : 0; }
APR_HD int FirstLocalBlock(int len) { return LocalStart(len) / kBlockTokens; }
// Predicted blocks in a budget of `budget_tokens` (sink and local window are 128 tokens).
APR_HD int PredictedBlocks(int budget_tokens) {
  const int n = (budget_tokens - kSinkTokens - kLocalTokens) / kBlockTokens;
  return n > 0 ? n : 0;
}
// Candidates chosen: all when they fit in k.
APR_HD int KeptCandidates(int len, int k_blocks) {
  const int c = NumCandidates(len);
  return c < k_blocks ? c : k_blocks;
}
// True when the CNN must rank the candidates (more than k, and at least 3).
APR_HD bool NeedsPrediction(int len, int k_blocks) {
  const int c = NumCandidates(len);
  return c >= kMinPredictedCandidates && c > k_blocks;
}
// predictor-hybrid (SparseOptions::hybrid; predictor/policy.h): of the k blocks a step
// selects when the candidates do not fit, a quarter (at least one) come from the current
// query's Quest bound at the step itself, the rest from the CNN one step ahead.
APR_HD int HybridQueryBlocks(int k_blocks) { return k_blocks / 4 > 1 ? k_blocks / 4 : 1; }
APR_HD int HybridCnnBlocks(int k_blocks) {
  const int q = HybridQueryBlocks(k_blocks);
  return k_blocks - (q < k_blocks ? q : k_blocks);
}
// The attended list's length, counting the local window's first block apart from a chosen
// candidate (so it may exceed the real length by one).
APR_HD int ListLengthBound(int len, int k_blocks) {
  const int fl = FirstLocalBlock(len), sb = SinkBlocks(len);
  const int local = NumBlocks(len) - (fl > sb ? fl : sb);
  return sb + KeptCandidates(len, k_blocks) + (local > 0 ? local : 0);
}
// An upper bound of any list's length: 4 sink + k chosen + 5 local blocks (a partial first
// block makes the 64-token window span 5 blocks).
APR_HD int MaxListLength(int k_blocks) {
  return kSinkBlocks + k_blocks + CeilDiv(kLocalTokens, kBlockTokens) + 1;
}

// Flash-decoding split of a list of `n` entries into at most `splits` contiguous ranges:
// every range but possibly the last has CeilDiv(n, splits) entries; ranges past the end
// are empty. The attention and combine kernels both use this, so they agree.
APR_HD int SplitSize(int n, int splits) { return n > 0 ? CeilDiv(n, splits) : 1; }
APR_HD int UsedSplits(int n, int splits) { return n > 0 ? CeilDiv(n, SplitSize(n, splits)) : 0; }

// The number of splits per (sequence, KV head) for a launch: as many CTAs as are resident
// at once (`ctas_per_sm` per multiprocessor: one wave, no straggling partial second wave),
// but no split shorter than `min_blocks_per_split` blocks (one per warp).
inline int ChooseSplits(int batch, int kv_heads, int max_entries, int num_sms, int ctas_per_sm = 3,
                        int min_blocks_per_split = 4) {
  const int rows = batch * kv_heads;
  int s = num_sms * ctas_per_sm / (rows > 0 ? rows : 1);
  const int cap = CeilDiv(max_entries > 0 ? max_entries : 1, min_blocks_per_split);
  if (s > cap) s = cap;
  return s < 1 ? 1 : s;
}

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_BLOCK_RULES_H_
