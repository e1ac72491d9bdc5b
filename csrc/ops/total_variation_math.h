#pragma once
// Per-element math of the total-variation ops, shared by the CPU and CUDA kernels.
#include <cstdint>

#include "../fastleak_math.h"

namespace fastleak {
namespace tv {

template <typename T>
FL_HOST_DEVICE T penalty(T d) {
  return d < T(0) ? -d : d;
}

// d|d|/dd, taken as 0 at d == 0.
template <typename T>
FL_HOST_DEVICE T penalty_grad(T d) {
  return T(int(d > T(0)) - int(d < T(0)));
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
template <typename T>
FL_HOST_DEVICE T pixel_grad_from_pairs(T sh, T sv, T d_left, T d_right, T c, T up, T down) {
  return sh * (d_left - d_right) + sv * (penalty_grad(c - up) - penalty_grad(down - c));
}

// The same from the four neighbours, missing ones passed as `c` itself.
template <typename T>
FL_HOST_DEVICE T pixel_grad(T sh, T sv, T c, T left, T right, T up, T down) {
  return pixel_grad_from_pairs(sh, sv, penalty_grad(c - left), penalty_grad(right - c), c, up, down);
}

}  // namespace tv
}  // namespace fastleak
