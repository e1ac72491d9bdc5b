// CUDA kernel of fastleak::imprint_recover: one thread per output element (grid-stride), each
// reading its row's and the next row's entries; the bias differences are written by a second
// grid-stride loop over the rows. No reductions, so results are deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../imprint_recover_host.h"
#include "../imprint_recover_math.h"

namespace fastleak {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    imprint_recover_kernel(const scalar_t* __restrict__ w, const scalar_t* __restrict__ b, int64_t R, int64_t K,
                           int64_t D, bool cumulative, scalar_t* __restrict__ images,
                           scalar_t* __restrict__ bias_diff) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t r = first; r < R; r += stride) {
    const bool has_next = cumulative && (r % K) + 1 < K;
    bias_diff[r] = imprint::bin_difference(b[r], has_next ? b[r + 1] : scalar_t(0));
  }
  const int64_t n = R * D;
  for (int64_t i = first; i < n; i += stride) {
    const int64_t r = i / D;
    const bool has_next = cumulative && (r % K) + 1 < K;
    const scalar_t db = imprint::bin_difference(b[r], has_next ? b[r + 1] : scalar_t(0));
    images[i] = imprint::bin_input(imprint::bin_difference(w[i], has_next ? w[i + D] : scalar_t(0)), db);
  }
}

std::tuple<at::Tensor, at::Tensor> imprint_recover_cuda(const at::Tensor& grad_weight_in,
                                                        const at::Tensor& grad_bias_in, bool cumulative) {
  constexpr const char* op = "fastleak::imprint_recover";
  imprint::check_inputs(grad_weight_in, grad_bias_in, op);
  const c10::cuda::CUDAGuard guard(grad_weight_in.device());
  const at::Tensor grad_weight = grad_weight_in.contiguous();
  const at::Tensor grad_bias = grad_bias_in.contiguous();
  const int64_t K = grad_weight.size(-2);
  const int64_t D = grad_weight.size(-1);
  const int64_t R = grad_bias.numel();
  at::Tensor images, bias_diff;
  std::tie(images, bias_diff) = imprint::empty_outputs(grad_weight, grad_bias);
  if (R == 0) return {images, bias_diff};
  const int64_t work = std::max(R, R * D);
  const int64_t blocks = std::min(kMaxBlocks, (work + kThreads - 1) / kThreads);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad_weight.scalar_type(), op, [&] {
    imprint_recover_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        grad_weight.const_data_ptr<scalar_t>(), grad_bias.const_data_ptr<scalar_t>(), R, K, D, cumulative,
        images.mutable_data_ptr<scalar_t>(), bias_diff.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {images, bias_diff};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CUDA, m) {
  m.impl("imprint_recover", &imprint_recover_cuda);
}

}  // namespace fastleak
