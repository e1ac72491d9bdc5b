#pragma once
// Host-side argument checks and outputs of imprint_recover, shared by the CPU and CUDA implementations.
#include <ATen/ATen.h>

#include <tuple>

#include "dtype.h"

namespace fastleak {
namespace imprint {

inline void check_inputs(const at::Tensor& grad_weight, const at::Tensor& grad_bias, const char* op) {
  TORCH_CHECK_VALUE(grad_weight.dim() >= 2, op, ": grad_weight must be at least 2-D [..., K, D], got ",
                    grad_weight.dim(), "-D shape ", grad_weight.sizes());
  check_dtype(op, "grad_weight", grad_weight);
  check_dtype(op, "grad_bias", grad_bias);
  TORCH_CHECK_TYPE(grad_bias.scalar_type() == grad_weight.scalar_type(), op, ": grad_bias has dtype ",
                   grad_bias.scalar_type(), ", expected ", grad_weight.scalar_type(), " (the dtype of grad_weight)");
  TORCH_CHECK_VALUE(grad_bias.device() == grad_weight.device(), op, ": grad_bias is on ", grad_bias.device(),
                    ", expected ", grad_weight.device(), " (the device of grad_weight)");
  const auto rows = grad_weight.sizes().slice(0, grad_weight.dim() - 1);
  TORCH_CHECK_VALUE(grad_bias.sizes() == rows, op, ": grad_bias must have shape [..., K] = ", rows,
                    " (grad_weight's shape without D), got ", grad_bias.sizes());
}

// Uninitialised (images, bias_diff) outputs, shaped like (grad_weight, grad_bias).
inline std::tuple<at::Tensor, at::Tensor> empty_outputs(const at::Tensor& grad_weight, const at::Tensor& grad_bias) {
  return {at::empty(grad_weight.sizes(), grad_weight.options()), at::empty(grad_bias.sizes(), grad_bias.options())};
}

}  // namespace imprint
}  // namespace fastleak
