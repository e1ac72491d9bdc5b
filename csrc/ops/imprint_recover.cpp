// Schema and C++ API of the imprint-recovery op. Kernels: cpu/ and cuda/imprint_recover.*;
// autograd: autograd/imprint_recover.cpp; fake kernel: fastleak/ops/imprint_recover.py.
#include "imprint_recover.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace fastleak {

std::tuple<at::Tensor, at::Tensor> imprint_recover(const at::Tensor& grad_weight, const at::Tensor& grad_bias,
                                                   bool cumulative) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::imprint_recover", "")
                       .typed<decltype(imprint_recover)>();
  return op.call(grad_weight, grad_bias, cumulative);
}

TORCH_LIBRARY_FRAGMENT(fastleak, m) {
  // Per bin of an imprint layer's gradients grad_weight [..., K, D], grad_bias [..., K]:
  // (images [..., K, D], bias_diff [..., K]); see fastleak/ops/imprint_recover.py.
  m.def("imprint_recover(Tensor grad_weight, Tensor grad_bias, bool cumulative=True) -> (Tensor, Tensor)");
}

}  // namespace fastleak
