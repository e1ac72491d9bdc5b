#pragma once
// Per-element math of the FC-gradient row statistics, shared by the CPU and CUDA kernels.
// Min and max are taken with plain comparisons; NaNs are counted separately and make
// both extrema NaN at the end (finish_extremum), as torch.amin/amax do.
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
FL_HOST_DEVICE T take_max(T a, T b) {
  return b > a ? b : a;
}

template <typename T>
FL_HOST_DEVICE int64_t is_negative(T v) {
  return v < T(0) ? 1 : 0;
}

template <typename T>
FL_HOST_DEVICE int64_t is_nan(T v) {
  return v != v ? 1 : 0;
}

template <typename T>
FL_HOST_DEVICE T finish_extremum(T extremum, int64_t nan_count) {
  return nan_count > 0 ? std::numeric_limits<T>::quiet_NaN() : extremum;
}

}  // namespace fc
}  // namespace fastleak
