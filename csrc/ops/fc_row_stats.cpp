// Schema of the FC-gradient row statistics op; kernels live in cpu/ and cuda/fc_row_stats.*.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fastleak, m) {
  // Per row of g [C, D] or [P, C, D]: (sum, min, max, count of entries < 0).
  m.def("fc_row_stats(Tensor g) -> (Tensor, Tensor, Tensor, Tensor)");
}
