// A decode step's inputs per batch row, as the step's kernels read them: one array of
// max_sequences entries per field, back to back in one buffer, so that one copy moves
// them from the pinned host staging to the device each step (CudaDecoder::h_step_,
// d_step_). T: int32_t on the host side (written), const int32_t on the device side.
#ifndef APRUNTIME_BACKENDS_CUDA_STEP_INPUTS_H_
#define APRUNTIME_BACKENDS_CUDA_STEP_INPUTS_H_

#include <cstdint>

namespace apr::cuda {

template <typename T>
struct StepInputs {
  // The buffer's length for `max_sequences` rows.
  static constexpr int64_t Elements(int max_sequences) { return int64_t{kFields} * max_sequences; }
  static StepInputs Over(T* base, int max_sequences) {
    StepInputs s;
    s.tokens = base;
    s.positions = base + 1 * max_sequences;
    s.context_lens = base + 2 * max_sequences;  // the new token included
    s.seq_slots = base + 3 * max_sequences;
    s.history_row = base + 4 * max_sequences;    // the history ring row this step writes
    s.dense = base + 5 * max_sequences;          // 1: the row attends densely this step
    s.next_lens = base + 6 * max_sequences;      // the next step's context (its selection's)
    s.history_count = base + 7 * max_sequences;  // rows appended (the CNN state's clock)
    return s;
  }
  static constexpr int kFields = 8;

  T* tokens = nullptr;
  T* positions = nullptr;
  T* context_lens = nullptr;
  T* seq_slots = nullptr;
  T* history_row = nullptr;
  T* dense = nullptr;
  T* next_lens = nullptr;
  T* history_count = nullptr;
};

}  // namespace apr::cuda

#endif  // APRUNTIME_BACKENDS_CUDA_STEP_INPUTS_H_
