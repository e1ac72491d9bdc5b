#pragma once
// C++ API of the total-variation ops: calls through the dispatcher (schemas in total_variation.cpp).
#include <ATen/core/Tensor.h>

namespace fastleak {

at::Tensor total_variation(const at::Tensor& x, int64_t p);

namespace detail {

at::Tensor total_variation_backward(const at::Tensor& grad_out, const at::Tensor& x, int64_t p);

}  // namespace detail
}  // namespace fastleak
