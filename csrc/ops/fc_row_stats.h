#pragma once
// C++ API of the FC-gradient row statistics op: calls through the dispatcher (schema in fc_row_stats.cpp).
#include <ATen/core/Tensor.h>

#include <tuple>

namespace fastleak {

std::tuple<at::Tensor, at::Tensor> fc_row_stats(const at::Tensor& g);

}  // namespace fastleak
