#pragma once
// Host-side argument checks and outputs of fc_row_stats, shared by the CPU and CUDA implementations.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <tuple>

#include "dtype.h"

namespace fastleak {
namespace fc {

inline void check_input(const at::Tensor& g, const char* op) {
  TORCH_CHECK_VALUE(g.dim() == 2 || g.dim() == 3, op, ": g must be 2-D [C, D] or 3-D [P, C, D], got ", g.dim(),
                    "-D shape ", g.sizes());
  check_dtype(op, "g", g);
  TORCH_CHECK_VALUE(g.size(-1) > 0, op, ": g must have a non-empty last dimension D (the minimum of an empty row is "
                    "undefined), got shape ", g.sizes());
}

// Uninitialised (sum, min) outputs, one entry per row of g.
inline std::tuple<at::Tensor, at::Tensor> empty_outputs(const at::Tensor& g) {
  const auto rows_shape = g.sizes().slice(0, g.dim() - 1);
  return {at::empty(rows_shape, g.options().dtype(at::toOpMathType(g.scalar_type()))),
          at::empty(rows_shape, g.options())};
}

}  // namespace fc
}  // namespace fastleak
