// Training data for the predictor, recorded from real decoding (docs/PREDICTOR.md,
// "Training data"). One *track* per (sequence, layer, KV head) holds every row the
// predictor needs: the H prefill rows that initialise the history, then per decode step
// the true (full-attention) block max-pooled row (the target) and, when recorded under a
// policy, the row that policy appended to its own history (the input it would see).
// A training sample is (the H rows before step t, the target row of step t); storing the
// row streams once instead of every window keeps the files ~H times smaller.
//
// File format (little-endian), written by TraceWriter, read by ReadTraceFile and by
// tools/predictor/trace_io.py:
//   header:  "APRTRC01" (8 bytes), u32 block, u32 history, u32 num_layers, u32 num_kv_heads
//   tracks until end of file, each:
//     u32 0x4b435254 ("TRCK"), u32 sequence, u32 layer, u32 kv_head,
//     u32 prompt_len, u32 prefill_rows, u32 steps,
//     u32 flags (bit 0: input rows present, bit 1: mass rows present)
//     f16 prefill rows: prefill_rows x ceil(prompt_len / block)
//     f16 target rows:  for i < steps, ceil((prompt_len + i + 1) / block) values
//     f16 input rows (flag bit 0): same widths as the target rows
//     f16 mass rows (flag bit 1): same widths; each block's true attention mass (summed
//         over its tokens), averaged over the KV head's query heads: what recall counts
#ifndef APRUNTIME_PREDICTOR_RECORDER_H_
#define APRUNTIME_PREDICTOR_RECORDER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "predictor/policy.h"
#include "runtime/attention_hooks.h"

namespace apr::predictor {

struct TraceHeader {
  uint32_t block = 16, history = 64, num_layers = 0, num_kv_heads = 0;
};

struct Track {
  uint32_t sequence = 0, layer = 0, kv_head = 0, prompt_len = 0;
  std::vector<std::vector<float>> prefill_rows;  // oldest first
  std::vector<std::vector<float>> target_rows;   // one per decode step
  std::vector<std::vector<float>> input_rows;    // empty, or one per decode step
  std::vector<std::vector<float>> mass_rows;     // empty, or one per decode step
};

// IEEE half precision, round to nearest even (overflow to infinity, NaN kept).
uint16_t F32ToF16(float f);

class TraceWriter {
 public:
  static absl::StatusOr<std::unique_ptr<TraceWriter>> Create(const std::string& path,
                                                             const TraceHeader& header);
  ~TraceWriter();
  // InvalidArgument if a row's width does not follow from prompt_len and block.
  absl::Status Write(const Track& track);
  absl::Status Close();
  int64_t bytes_written() const { return bytes_; }

 private:
  TraceWriter(std::FILE* f, std::string path, TraceHeader h) : f_(f), path_(std::move(path)), h_(h) {}
  absl::Status Put(const void* p, size_t n);
  std::FILE* f_;
  std::string path_;
  TraceHeader h_;
  int64_t bytes_ = 0;
  std::vector<uint16_t> buf_;
};

// Reads a whole trace file (values widened back to float).
absl::StatusOr<std::vector<Track>> ReadTraceFile(const std::string& path, TraceHeader* header);

// Records the tracks of one sequence. Without a policy the decode uses full attention and
// the history inputs are the target rows themselves (not stored twice); with a predictor
// policy the decode follows the policy and the input rows are the rows it appended.
// Mass rows are always recorded.
class TraceRecorder : public AttentionHooks {
 public:
  // `policy` may be null; not owned.
  TraceRecorder(const SelectionConfig& config, const ModelDims& dims,
                AttentionPredictorPolicy* policy = nullptr);

  void SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) override;
  void ObserveDecode(const DecodeStep& step, const float* probs) override;
  bool WantsProbabilities() const override { return policy_ != nullptr; }
  int64_t PrefillRowsWanted() const override { return config_.history; }
  void ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                      const float* probs) override;

  // The tracks recorded so far ([layer * num_kv_heads + kv_head]), with `sequence` set.
  std::vector<Track> TakeTracks(uint32_t sequence);

 private:
  SelectionConfig config_;
  ModelDims dims_;
  AttentionPredictorPolicy* policy_;
  std::vector<Track> tracks_;
  std::vector<float> probs_, row_, mass_;
};

}  // namespace apr::predictor

#endif  // APRUNTIME_PREDICTOR_RECORDER_H_
