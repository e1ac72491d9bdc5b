#pragma once
// Per-element math of the grad_distance ops, shared by the CPU and CUDA kernels.
#include "../fastleak_math.h"

namespace fastleak {
namespace grad_distance {

// Slots of the partial sums, in the order of the last dimension of grad_distance_partials.
constexpr int kSlots = 4;
constexpr int kDiff2 = 0;  // sum (r - t)^2, computed directly to avoid cancellation when r ~ t
constexpr int kDot = 1;    // sum r * t
constexpr int kRecSq = 2;  // sum r^2
constexpr int kTgtSq = 3;  // sum t^2

// Adds one element pair to the four running sums (one accumulator per slot).
template <typename T>
FL_HOST_DEVICE void accumulate(T r, T t, T& diff2, T& dot, T& rec_sq, T& tgt_sq) {
  const T d = r - t;
  diff2 += d * d;
  dot += r * t;
  rec_sq += r * r;
  tgt_sq += t * t;
}

template <typename T>
FL_HOST_DEVICE T backward_value(T coef_rec, T r, T coef_target, T t) {
  return coef_rec * r + coef_target * t;
}

}  // namespace grad_distance
}  // namespace fastleak
