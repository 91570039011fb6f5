// Helpers of the GPU tests: device round trips, bf16 rounding, relative errors.
#ifndef APRUNTIME_BACKENDS_CUDA_TEST_UTIL_H_
#define APRUNTIME_BACKENDS_CUDA_TEST_UTIL_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "runtime/dtype.h"

namespace apr::cuda::testing {

#define ASSERT_CUDA(call) \
  ASSERT_EQ((call), cudaSuccess) << #call << ": " << cudaGetErrorString(cudaGetLastError())

inline float RoundBf16(float f) { return Bf16ToF32(F32ToBf16(f)); }

inline std::vector<uint16_t> ToBf16Bits(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = F32ToBf16(v[i]);
  return o;
}

// Owning device copy of a host vector (cudaFree on destruction).
template <typename T>
class Dev {
 public:
  Dev() = default;
  explicit Dev(size_t n) : n_(n) {
    if (n > 0 && cudaMalloc(&p_, n * sizeof(T)) != cudaSuccess) p_ = nullptr;
  }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) {
    if (p_ != nullptr) cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~Dev() {
    if (p_ != nullptr) cudaFree(p_);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  Dev(Dev&& o) noexcept { *this = std::move(o); }
  Dev& operator=(Dev&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  std::vector<T> Host() const {
    std::vector<T> v(n_);
    if (n_ > 0) cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }
  // Poisons the buffer (0xff bytes: NaN for floats, -1 for ints) so unwritten outputs show.
  void Poison() const {
    if (n_ > 0) cudaMemset(p_, 0xff, n_ * sizeof(T));
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// bf16 device buffer from float values (rounded).
inline Dev<uint16_t> DevBf16(const std::vector<float>& v) { return Dev<uint16_t>(ToBf16Bits(v)); }
inline __nv_bfloat16* B(const Dev<uint16_t>& d) {
  return reinterpret_cast<__nv_bfloat16*>(d.get());
}
inline std::vector<float> HostBf16(const Dev<uint16_t>& d) {
  std::vector<uint16_t> bits = d.Host();
  std::vector<float> f(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) f[i] = Bf16ToF32(bits[i]);
  return f;
}

inline std::vector<float> Uniform(std::mt19937_64& rng, size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// ||got - want|| / ||want||; infinity when got has a NaN or Inf.
inline double RelErr(const float* got, const double* want, size_t n) {
  double d = 0, r = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    d += (got[i] - want[i]) * (got[i] - want[i]);
    r += want[i] * want[i];
  }
  return std::sqrt(d / (r > 0 ? r : 1e-300));
}
inline double RelErr(const std::vector<float>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  return RelErr(got.data(), want.data(), std::min(got.size(), want.size()));
}
inline double RelErr(const std::vector<float>& got, const std::vector<float>& want) {
  std::vector<double> w(want.begin(), want.end());
  return RelErr(got, w);
}

// bf16 operands, float32 accumulation: METHOD.md's range for bf16 is 1e-3 .. 1e-2.
constexpr double kBf16Tol = 1e-2;
// Float32 arithmetic on the same (already rounded) operands.
constexpr double kF32Tol = 1e-4;

}  // namespace apr::cuda::testing

#endif  // APRUNTIME_BACKENDS_CUDA_TEST_UTIL_H_
