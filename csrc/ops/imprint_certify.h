#pragma once
// C++ API of the imprint-certification op: calls through the dispatcher (schema in imprint_certify.cpp).
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <tuple>

namespace fastleak {

std::tuple<at::Tensor, at::Tensor, at::Tensor> imprint_certify(const at::Tensor& grad_weight,
                                                               const at::Tensor& grad_bias, bool cumulative,
                                                               const c10::optional<at::Tensor>& measurement,
                                                               double low, double high, int64_t levels);

}  // namespace fastleak
