// Schema and C++ API of the FC-gradient row statistics op. Kernels: cpu/ and cuda/fc_row_stats.*;
// autograd: autograd/fc_row_stats.cpp; fake kernel: fastleak/ops/fc_row_stats.py.
#include "fc_row_stats.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace fastleak {

std::tuple<at::Tensor, at::Tensor> fc_row_stats(const at::Tensor& g) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::fc_row_stats", "")
                       .typed<decltype(fc_row_stats)>();
  return op.call(g);
}

TORCH_LIBRARY_FRAGMENT(fastleak, m) {
  // Per row of g [C, D] or [P, C, D]: (sum, min).
  m.def("fc_row_stats(Tensor g) -> (Tensor, Tensor)");
}

}  // namespace fastleak
