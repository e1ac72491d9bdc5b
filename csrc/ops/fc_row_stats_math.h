#pragma once
// Per-element math of the FC-gradient row statistics, shared by the CPU and CUDA kernels.
// The minimum is taken with plain comparisons; NaNs are counted separately and make the
// minimum NaN at the end (finish_min), as torch.amin does.
#include <cstdint>
#include <limits>

#include "../fastleak_math.h"

namespace fastleak {
namespace fc {

template <typename T>
FL_HOST_DEVICE T take_min(T a, T b) {
  return b < a ? b : a;
}

template <typename T>
FL_HOST_DEVICE int64_t is_nan(T v) {
  return v != v ? 1 : 0;
}

template <typename T>
FL_HOST_DEVICE T finish_min(T min, int64_t nan_count) {
  return nan_count > 0 ? std::numeric_limits<T>::quiet_NaN() : min;
}

}  // namespace fc
}  // namespace fastleak
