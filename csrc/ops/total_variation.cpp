// Schema of the total-variation ops; kernels live in cpu/ and cuda/total_variation.*.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fastleak, m) {
  // Per-image mean |horizontal diff|^p + mean |vertical diff|^p of x [N, C, H, W], p in {1, 2}.
  m.def("total_variation(Tensor x, int p) -> Tensor");
  // Gradient of total_variation w.r.t. x, given grad_out [N].
  m.def("total_variation_backward(Tensor grad_out, Tensor x, int p) -> Tensor");
}
