// Schemas and C++ API of the multi-tensor gradient-distance ops. Kernels: cpu/ and cuda/grad_distance.*;
// autograd: autograd/grad_distance.cpp; fake kernels: fastleak/ops/grad_distance.py.
#include "grad_distance.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace fastleak {

at::Tensor grad_distance_partials(at::TensorList rec, at::TensorList target, bool batched, bool row_targets) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::grad_distance_partials", "")
                       .typed<decltype(grad_distance_partials)>();
  return op.call(rec, target, batched, row_targets);
}

namespace detail {

std::vector<at::Tensor> grad_distance_backward(at::TensorList rec, at::TensorList target, const at::Tensor& coef_rec,
                                               const at::Tensor& coef_target, bool batched, bool row_targets) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::grad_distance_backward", "")
                       .typed<decltype(grad_distance_backward)>();
  return op.call(rec, target, coef_rec, coef_target, batched, row_targets);
}

}  // namespace detail

TORCH_LIBRARY_FRAGMENT(fastleak, m) {
  // [R, N, 4] sums per (restart, tensor): sum (r-t)^2, sum r*t, sum r^2, sum t^2.
  // R = rec[i].size(0) when batched, else 1. A batched target is shared by all restarts, or with
  // row_targets has the leading dimension R too, and restart r is compared with target row r.
  m.def("grad_distance_partials(Tensor[] rec, Tensor[] target, bool batched, bool row_targets) -> Tensor");
  // out[i][r] = coef_rec[r, i] * rec[i][r] + coef_target[r, i] * target[i] (target[i][r] with
  // row_targets); coefs are [R, N].
  m.def(
      "grad_distance_backward(Tensor[] rec, Tensor[] target, Tensor coef_rec, Tensor coef_target, "
      "bool batched, bool row_targets) -> Tensor[]");
}

}  // namespace fastleak
