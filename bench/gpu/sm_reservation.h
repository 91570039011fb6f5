// Holds whole SMs for the length of a measurement, so a benchmark can time its work on
// the rest of the GPU: what a partition (some SMs given to other work, as a predictor on
// its own SMs would take them) costs the work that keeps the remainder.
#ifndef APRUNTIME_BENCH_GPU_SM_RESERVATION_H_
#define APRUNTIME_BENCH_GPU_SM_RESERVATION_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace apr::bench {

class SmReservation {
 public:
  SmReservation() = default;
  SmReservation(const SmReservation&) = delete;
  SmReservation& operator=(const SmReservation&) = delete;
  ~SmReservation();

  // Starts `sms` CTAs that each take a whole SM (all of its shared memory, so no other CTA
  // fits beside one) and returns once every one of them is resident. 0 holds nothing.
  // Nothing may synchronise the whole device (cudaDeviceSynchronize, cudaFree) until
  // Release(): the held SMs wait for it.
  cudaError_t Hold(int sms);
  // Lets the CTAs exit and waits for them; cudaErrorLaunchTimeout if they had already
  // left on their time limit (2 minutes), so the SMs were not held throughout.
  cudaError_t Release();

 private:
  cudaStream_t stream_ = nullptr;
  int32_t* host_ = nullptr;  // mapped: [0] release flag, [1] resident CTAs, [2] timed out
  int held_ = 0;
};

}  // namespace apr::bench

#endif  // APRUNTIME_BENCH_GPU_SM_RESERVATION_H_
