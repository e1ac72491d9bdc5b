#pragma once
// Host-side argument checks of the total-variation ops, shared by the CPU and CUDA implementations.
#include <ATen/ATen.h>

#include <type_traits>

#include "dtype.h"

namespace fastleak {
namespace tv {

inline void check_input(const at::Tensor& x, int64_t p, const char* op) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C, H, W], got ", x.dim(), "-D shape ", x.sizes());
  check_dtype(op, "x", x);
  TORCH_CHECK_VALUE(p == 1 || p == 2, op, ": p must be 1 (absolute differences) or 2 (squared differences), got ",
                    p);
}

inline void check_backward_input(const at::Tensor& grad_out, const at::Tensor& x, int64_t p, const char* op) {
  check_input(x, p, op);
  TORCH_CHECK_VALUE(grad_out.dim() == 1 && grad_out.size(0) == x.size(0), op,
                    ": grad_out must have shape [N] = [", x.size(0), "], got ", grad_out.sizes());
  TORCH_CHECK_TYPE(grad_out.scalar_type() == x.scalar_type(), op, ": grad_out has dtype ", grad_out.scalar_type(),
                   ", expected ", x.scalar_type(), " (the dtype of x)");
  TORCH_CHECK_VALUE(grad_out.device() == x.device(), op, ": grad_out must be on the device of x (", x.device(),
                    "), got ", grad_out.device());
}

// Calls f(std::integral_constant<int, P>) for the exponent p (checked: 1 or 2), so that kernels
// take P as a template argument.
template <typename F>
void dispatch_exponent(int64_t p, const F& f) {
  if (p == 1) {
    f(std::integral_constant<int, 1>{});
  } else {
    f(std::integral_constant<int, 2>{});
  }
}

}  // namespace tv
}  // namespace fastleak
