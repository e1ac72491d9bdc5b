// CPU kernel of fastleak::imprint_recover: rows (bins) in parallel, one pass over each row and
// the next one. Every output element depends on its own inputs only, so results do not depend on
// the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../imprint_recover_host.h"
#include "../imprint_recover_math.h"

namespace fastleak {
namespace {

template <typename scalar_t>
void recover_row(const scalar_t* weight, const scalar_t* next_weight, scalar_t bias_diff, int64_t D,
                 scalar_t* image) {
  if (next_weight == nullptr) {
    for (int64_t d = 0; d < D; ++d) image[d] = imprint::bin_input(imprint::bin_difference(weight[d], scalar_t(0)),
                                                                  bias_diff);
  } else {
    for (int64_t d = 0; d < D; ++d) image[d] = imprint::bin_input(imprint::bin_difference(weight[d], next_weight[d]),
                                                                  bias_diff);
  }
}

std::tuple<at::Tensor, at::Tensor> imprint_recover_cpu(const at::Tensor& grad_weight_in,
                                                       const at::Tensor& grad_bias_in, bool cumulative) {
  constexpr const char* op = "fastleak::imprint_recover";
  imprint::check_inputs(grad_weight_in, grad_bias_in, op);
  const at::Tensor grad_weight = grad_weight_in.contiguous();
  const at::Tensor grad_bias = grad_bias_in.contiguous();
  const int64_t K = grad_weight.size(-2);
  const int64_t D = grad_weight.size(-1);
  const int64_t R = grad_bias.numel();
  at::Tensor images, bias_diff;
  std::tie(images, bias_diff) = imprint::empty_outputs(grad_weight, grad_bias);
  if (R == 0) return {images, bias_diff};
  AT_DISPATCH_FLOATING_TYPES(grad_weight.scalar_type(), op, [&] {
    const scalar_t* w = grad_weight.const_data_ptr<scalar_t>();
    const scalar_t* b = grad_bias.const_data_ptr<scalar_t>();
    scalar_t* out = images.mutable_data_ptr<scalar_t>();
    scalar_t* db = bias_diff.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(D, 1));
    at::parallel_for(0, R, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const bool has_next = cumulative && (r % K) + 1 < K;
        db[r] = imprint::bin_difference(b[r], has_next ? b[r + 1] : scalar_t(0));
        recover_row(w + r * D, has_next ? w + (r + 1) * D : nullptr, db[r], D, out + r * D);
      }
    });
  });
  return {images, bias_diff};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CPU, m) {
  m.impl("imprint_recover", &imprint_recover_cpu);
}

}  // namespace fastleak
