#pragma once
// C++ API of the gradient-distance ops: calls through the dispatcher (schemas in grad_distance.cpp).
#include <ATen/core/Tensor.h>

#include <vector>

namespace fastleak {

at::Tensor grad_distance_partials(at::TensorList rec, at::TensorList target, bool batched, bool row_targets);

namespace detail {

std::vector<at::Tensor> grad_distance_backward(at::TensorList rec, at::TensorList target, const at::Tensor& coef_rec,
                                               const at::Tensor& coef_target, bool batched, bool row_targets);

}  // namespace detail
}  // namespace fastleak
