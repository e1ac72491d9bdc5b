// Schema and C++ API of the imprint-certification op. Kernels: cpu/ and cuda/imprint_certify.*;
// autograd: autograd/imprint_recover.cpp; fake kernel: fastleak/ops/imprint_certify.py.
#include "imprint_certify.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace fastleak {

std::tuple<at::Tensor, at::Tensor, at::Tensor> imprint_certify(const at::Tensor& grad_weight,
                                                               const at::Tensor& grad_bias, bool cumulative,
                                                               const c10::optional<at::Tensor>& measurement,
                                                               double low, double high, int64_t levels) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::imprint_certify", "")
                       .typed<decltype(imprint_certify)>();
  return op.call(grad_weight, grad_bias, cumulative, measurement, low, high, levels);
}

TORCH_LIBRARY_FRAGMENT(fastleak, m) {
  // imprint_recover's (images [..., K, D], bias_diff [..., K]) and, in the same pass, each bin's
  // statistics [..., K, 5] (imprint_recover_math.h); see fastleak/ops/imprint_certify.py.
  m.def("imprint_certify(Tensor grad_weight, Tensor grad_bias, bool cumulative, Tensor? measurement, float low, "
        "float high, int levels) -> (Tensor, Tensor, Tensor)");
}

}  // namespace fastleak
