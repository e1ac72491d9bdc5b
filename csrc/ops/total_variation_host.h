#pragma once
// Host-side argument checks of the total-variation ops, shared by the CPU and CUDA implementations.
#include <ATen/ATen.h>

namespace fastleak {
namespace tv {

inline void check_input(const at::Tensor& x, int64_t p, const char* op) {
  TORCH_CHECK(x.dim() == 4, op, ": x must be 4-D [N, C, H, W], got ", x.dim(), "-D shape ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, ": x must be a floating-point tensor, got dtype ",
              x.scalar_type());
  TORCH_CHECK(p == 1 || p == 2, op, ": p must be 1 or 2, got ", p);
}

inline void check_backward_input(const at::Tensor& grad_out, const at::Tensor& x, int64_t p, const char* op) {
  check_input(x, p, op);
  TORCH_CHECK(grad_out.dim() == 1 && grad_out.size(0) == x.size(0), op,
              ": grad_out must have shape [N] = [", x.size(0), "], got ", grad_out.sizes());
  TORCH_CHECK(at::isFloatingType(grad_out.scalar_type()), op,
              ": grad_out must be a floating-point tensor, got dtype ", grad_out.scalar_type());
  TORCH_CHECK(grad_out.device() == x.device(), op, ": grad_out must be on the device of x (", x.device(),
              "), got ", grad_out.device());
}

// The dtype of the per-image result and of the upstream gradient: float64 for float64, else float32.
inline at::ScalarType result_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace tv
}  // namespace fastleak
