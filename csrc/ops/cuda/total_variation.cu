// CUDA kernels of fastleak::total_variation and its backward.
// Forward: blocks of one image each reduce a fixed, strided share of the image's pixels to a
// partial sum (fixed-order tree), and a second kernel adds each image's partials in a fixed
// order: deterministic, no atomics. Backward: one thread per pixel gathers its neighbours.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "../total_variation_math.h"
#include "../total_variation_host.h"

namespace fastleak {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kPixelsPerThread = 8;
constexpr int64_t kMaxChunks = 1024;

// Sum over the block in a fixed order; the result is valid in thread 0.
template <typename opmath_t>
__device__ opmath_t block_sum(opmath_t v) {
  __shared__ opmath_t warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_sums[lane] : opmath_t(0);
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Block b reduces chunk b % chunks of image b / chunks: pixels k*kThreads + t + j*chunks*kThreads.
template <int P, typename scalar_t, typename opmath_t = at::opmath_type<scalar_t>>
__global__ void __launch_bounds__(kThreads)
    forward_partial_kernel(const scalar_t* __restrict__ x, int64_t M, int64_t H, int64_t W, int64_t chunks,
                           opmath_t wh, opmath_t wv, opmath_t* __restrict__ partial) {
  const int64_t n = blockIdx.x / chunks;
  const int64_t k = blockIdx.x % chunks;
  const scalar_t* img = x + n * M;
  opmath_t s = 0;
  for (int64_t i = k * kThreads + threadIdx.x; i < M; i += chunks * kThreads) {
    const int64_t w = i % W;
    const int64_t h = (i / W) % H;
    const opmath_t c = static_cast<opmath_t>(img[i]);
    const opmath_t right = w + 1 < W ? static_cast<opmath_t>(img[i + 1]) : c;
    const opmath_t down = h + 1 < H ? static_cast<opmath_t>(img[i + W]) : c;
    s += wh * tv::penalty<P>(right - c) + wv * tv::penalty<P>(down - c);
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

template <typename opmath_t>
__global__ void __launch_bounds__(kThreads)
    combine_kernel(const opmath_t* __restrict__ partial, int64_t chunks, opmath_t* __restrict__ out) {
  opmath_t s = 0;
  for (int64_t k = threadIdx.x; k < chunks; k += kThreads) s += partial[blockIdx.x * chunks + k];
  s = block_sum(s);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

template <int P, typename scalar_t, typename opmath_t = at::opmath_type<scalar_t>>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const opmath_t* __restrict__ grad_out, const scalar_t* __restrict__ x, int64_t total, int64_t M,
                    int64_t H, int64_t W, opmath_t wh, opmath_t wv, scalar_t* __restrict__ grad) {
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += stride) {
    const int64_t w = i % W;
    const int64_t h = (i / W) % H;
    const opmath_t go = grad_out[i / M];
    const opmath_t c = static_cast<opmath_t>(x[i]);
    const opmath_t left = w > 0 ? static_cast<opmath_t>(x[i - 1]) : c;
    const opmath_t right = w + 1 < W ? static_cast<opmath_t>(x[i + 1]) : c;
    const opmath_t up = h > 0 ? static_cast<opmath_t>(x[i - W]) : c;
    const opmath_t down = h + 1 < H ? static_cast<opmath_t>(x[i + W]) : c;
    grad[i] = static_cast<scalar_t>(tv::pixel_grad<P>(go * wh, go * wv, c, left, right, up, down));
  }
}

at::Tensor total_variation_cuda(const at::Tensor& x_in, int64_t p) {
  constexpr const char* op = "fastleak::total_variation";
  tv::check_input(x_in, p, op);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t M = C * H * W;
  at::Tensor out = at::empty({N}, x.options().dtype(at::toOpMathType(x.scalar_type())));
  if (N == 0 || M == 0) return out.zero_();
  const int64_t chunks = std::clamp<int64_t>((M + kThreads * kPixelsPerThread - 1) / (kThreads * kPixelsPerThread),
                                             1, kMaxChunks);
  TORCH_CHECK(N * chunks <= std::numeric_limits<int32_t>::max(), op, ": x has too many images (", N, ")");
  at::Tensor partial = at::empty({N * chunks}, out.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  tv::dispatch_exponent(p, [&](auto exponent) {
    constexpr int P = decltype(exponent)::value;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), op, [&] {
      using opmath_t = at::opmath_type<scalar_t>;
      const auto wh = static_cast<opmath_t>(tv::mean_weight<double>(C * H * (W - 1)));
      const auto wv = static_cast<opmath_t>(tv::mean_weight<double>(C * (H - 1) * W));
      forward_partial_kernel<P, scalar_t><<<static_cast<unsigned>(N * chunks), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), M, H, W, chunks, wh, wv, partial.mutable_data_ptr<opmath_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      combine_kernel<opmath_t><<<static_cast<unsigned>(N), kThreads, 0, stream>>>(
          partial.const_data_ptr<opmath_t>(), chunks, out.mutable_data_ptr<opmath_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor total_variation_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& x_in, int64_t p) {
  constexpr const char* op = "fastleak::total_variation_backward";
  tv::check_backward_input(grad_out_in, x_in, p, op);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t M = C * H * W, total = x.numel();
  at::Tensor grad = at::empty(x.sizes(), x.options());
  if (total == 0) return grad;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 20);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  tv::dispatch_exponent(p, [&](auto exponent) {
    constexpr int P = decltype(exponent)::value;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), op, [&] {
      using opmath_t = at::opmath_type<scalar_t>;
      const auto wh = static_cast<opmath_t>(tv::mean_weight<double>(C * H * (W - 1)));
      const auto wv = static_cast<opmath_t>(tv::mean_weight<double>(C * (H - 1) * W));
      backward_kernel<P, scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          grad_out.const_data_ptr<opmath_t>(), x.const_data_ptr<scalar_t>(), total, M, H, W, wh, wv,
          grad.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CUDA, m) {
  m.impl("total_variation", &total_variation_cuda);
  m.impl("total_variation_backward", &total_variation_backward_cuda);
}

}  // namespace fastleak
