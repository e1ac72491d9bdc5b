#pragma once
// Per-element math of the total-variation ops, shared by the CPU and CUDA kernels. The exponent P
// of the differences is a template argument (1 or 2), so each kernel is compiled once per exponent
// with no per-element branch.
#include <cstdint>

#include "../fastleak_math.h"

namespace fastleak {
namespace tv {

// |d|^P.
template <int P, typename T>
FL_HOST_DEVICE T penalty(T d) {
  static_assert(P == 1 || P == 2, "total_variation: the exponent P is 1 or 2");
  if constexpr (P == 1) {
    return d < T(0) ? -d : d;
  } else {
    return d * d;
  }
}

// d|d|^P/dd; for P == 1 taken as 0 at d == 0.
template <int P, typename T>
FL_HOST_DEVICE T penalty_grad(T d) {
  static_assert(P == 1 || P == 2, "total_variation: the exponent P is 1 or 2");
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

// d TV / d c for the pixel `c`, scaled by the upstream gradient through sh = grad_out * wh and
// sv = grad_out * wv, given the derivatives of its horizontal pairs, d_left = penalty_grad(c - left)
// and d_right = penalty_grad(right - c) (0 for a missing pair), and its vertical neighbours.
// Missing vertical neighbours are passed as `c` itself: penalty_grad(0) == 0.
template <int P, typename T>
FL_HOST_DEVICE T pixel_grad_from_pairs(T sh, T sv, T d_left, T d_right, T c, T up, T down) {
  return sh * (d_left - d_right) + sv * (penalty_grad<P>(c - up) - penalty_grad<P>(down - c));
}

// The same from the four neighbours, missing ones passed as `c` itself.
template <int P, typename T>
FL_HOST_DEVICE T pixel_grad(T sh, T sv, T c, T left, T right, T up, T down) {
  return pixel_grad_from_pairs<P>(sh, sv, penalty_grad<P>(c - left), penalty_grad<P>(right - c), c, up, down);
}

}  // namespace tv
}  // namespace fastleak
