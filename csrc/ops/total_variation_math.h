#pragma once
// Per-element math of the total-variation ops, shared by the CPU and CUDA kernels.
#include <cstdint>

#include "../fastleak_math.h"

namespace fastleak {
namespace tv {

// |d|^P for P in {1, 2}.
template <int P, typename T>
FL_HOST_DEVICE T penalty(T d) {
  if constexpr (P == 1) {
    return d < T(0) ? -d : d;
  } else {
    return d * d;
  }
}

// d/dd |d|^P, with the derivative of |d| at 0 taken as 0.
template <int P, typename T>
FL_HOST_DEVICE T penalty_grad(T d) {
  if constexpr (P == 1) {
    return T(int(d > T(0)) - int(d < T(0)));
  } else {
    return T(2) * d;
  }
}

// Weight of one pair in a mean over `pairs` pairs; a direction without pairs contributes 0.
template <typename T>
FL_HOST_DEVICE T mean_weight(int64_t pairs) {
  return pairs > 0 ? T(1) / T(pairs) : T(0);
}

// d TV / d c for the pixel `c` with its four neighbours, scaled by the upstream gradient
// through sh = grad_out * wh and sv = grad_out * wv. Missing neighbours are passed as `c`
// itself: penalty_grad(0) == 0 makes them contribute nothing.
template <int P, typename T>
FL_HOST_DEVICE T pixel_grad(T sh, T sv, T c, T left, T right, T up, T down) {
  return sh * (penalty_grad<P>(c - left) - penalty_grad<P>(right - c)) +
         sv * (penalty_grad<P>(c - up) - penalty_grad<P>(down - c));
}

}  // namespace tv
}  // namespace fastleak
