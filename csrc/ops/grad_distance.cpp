// Schemas of the multi-tensor gradient-distance ops; the kernels live in cpu/ and cuda/,
// autograd and fake (meta) implementations in fastleak/ops/grad_distance.py.
#include <torch/library.h>

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
