#pragma once
// C++ API of the imprint-recovery op: calls through the dispatcher (schema in imprint_recover.cpp).
#include <ATen/core/Tensor.h>

#include <tuple>

namespace fastleak {

std::tuple<at::Tensor, at::Tensor> imprint_recover(const at::Tensor& grad_weight, const at::Tensor& grad_bias,
                                                   bool cumulative);

}  // namespace fastleak
