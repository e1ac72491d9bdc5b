// Schemas and C++ API of the total-variation ops. Kernels: cpu/ and cuda/total_variation.*;
// autograd: autograd/total_variation.cpp; fake kernels: fastleak/ops/total_variation.py.
#include "total_variation.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace fastleak {

at::Tensor total_variation(const at::Tensor& x, int64_t p) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::total_variation", "")
                       .typed<decltype(total_variation)>();
  return op.call(x, p);
}

namespace detail {

at::Tensor total_variation_backward(const at::Tensor& grad_out, const at::Tensor& x, int64_t p) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::total_variation_backward", "")
                       .typed<decltype(total_variation_backward)>();
  return op.call(grad_out, x, p);
}

}  // namespace detail

TORCH_LIBRARY_FRAGMENT(fastleak, m) {
  // Per-image mean |horizontal diff|^p + mean |vertical diff|^p of x [N, C, H, W], p = 1 or 2.
  m.def("total_variation(Tensor x, int p=1) -> Tensor");
  // Gradient of total_variation w.r.t. x, given grad_out [N].
  m.def("total_variation_backward(Tensor grad_out, Tensor x, int p) -> Tensor");
}

}  // namespace fastleak
