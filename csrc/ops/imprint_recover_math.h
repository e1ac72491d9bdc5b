#pragma once
// Per-element math of the imprint recovery, shared by the CPU and CUDA kernels. Everything is
// computed in the input dtype, as the reference does, so the kernels match it bit for bit.
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

}  // namespace imprint
}  // namespace fastleak
