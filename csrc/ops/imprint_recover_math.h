#pragma once
// Per-element math of the imprint recovery, shared by the CPU and CUDA kernels. Everything is
// computed in the input dtype, as the reference does, so the kernels match it bit for bit.
#include <math.h>

#include "../fastleak_math.h"

namespace fastleak {
namespace imprint {

// A bin's gradient: its row minus the next row (cumulative rows), or minus zero (the last row,
// or rows that are bins by themselves).
template <typename T>
FL_HOST_DEVICE T bin_difference(T row, T next) {
  return row - next;
}

// The input of a bin that holds one sample: its weight-gradient difference over its bias-gradient
// difference. A bin with a zero bias difference holds no sample and gets zeros.
template <typename T>
FL_HOST_DEVICE T bin_input(T weight_diff, T bias_diff) {
  return bias_diff == T(0) ? T(0) : weight_diff / bias_diff;
}

// The statistics imprint_certify computes for each bin's input, in this order in its last
// dimension: the largest distance to the pixel grid (in grid steps; 0 without a grid), the smallest
// and largest value, the measurement (the input's dot product with its row's measurement; 0
// without one) and whether every value is finite (1 or 0). A bin with a value that is not finite
// gets NaN for every statistic but the last.
enum Stat : int { kOffGrid = 0, kLow = 1, kHigh = 2, kMeasured = 3, kFinite = 4, kNumStats = 5 };

// Distance of v to the nearest point of the grid low + i / scale, in grid steps (scale = levels /
// (high - low)); computed in the op-math type of the inputs, rounding half to even as torch.round.
FL_HOST_DEVICE float distance_to_integer(float v) {
  return fabsf(v - nearbyintf(v));
}

FL_HOST_DEVICE double distance_to_integer(double v) {
  return fabs(v - nearbyint(v));
}

template <typename T>
FL_HOST_DEVICE T grid_offset(T v, T low, T scale) {
  return distance_to_integer((v - low) * scale);
}

// 0 for a finite value, 1 for NaN or an infinity (v - v is NaN for both).
template <typename T>
FL_HOST_DEVICE int not_finite(T v) {
  return (v - v) != (v - v) ? 1 : 0;
}

}  // namespace imprint
}  // namespace fastleak
