#pragma once
// Host-side argument checks and outputs of fc_row_stats, shared by the CPU and CUDA implementations.
#include <ATen/ATen.h>

#include <tuple>

namespace fastleak {
namespace fc {

inline void check_input(const at::Tensor& g, const char* op) {
  TORCH_CHECK(g.dim() == 2 || g.dim() == 3, op, ": g must be 2-D [C, D] or 3-D [P, C, D], got ", g.dim(),
              "-D shape ", g.sizes());
  TORCH_CHECK(at::isFloatingType(g.scalar_type()), op, ": g must be a floating-point tensor, got dtype ",
              g.scalar_type());
  TORCH_CHECK(g.size(-1) > 0, op, ": g must have a non-empty last dimension D (min/max of an empty row are "
              "undefined), got shape ", g.sizes());
}

// Uninitialised (sum, min, max, negative count) outputs, one entry per row of g.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> empty_outputs(const at::Tensor& g) {
  const auto rows_shape = g.sizes().slice(0, g.dim() - 1);
  const at::ScalarType sum_type = g.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return {at::empty(rows_shape, g.options().dtype(sum_type)), at::empty(rows_shape, g.options()),
          at::empty(rows_shape, g.options()), at::empty(rows_shape, g.options().dtype(at::kLong))};
}

}  // namespace fc
}  // namespace fastleak
