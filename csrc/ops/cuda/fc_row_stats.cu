// CUDA kernel of fastleak::fc_row_stats: one warp (short rows) or one block (long rows) per
// row; each thread reduces a fixed strided share of the row, then a fixed-order tree of warp
// shuffles (and shared memory across warps) combines them: deterministic, no atomics.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "../fc_row_stats_host.h"
#include "../fc_row_stats_math.h"

namespace fastleak {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kWarpRowMaxD = 1024;  // rows up to this length get one warp each

template <typename opmath_t>
struct Stats {
  opmath_t sum, lo;
  long long nan;

  __device__ void merge(const Stats& o) {
    sum += o.sum;
    lo = fc::take_min(lo, o.lo);
    nan += o.nan;
  }
  __device__ Stats shfl_down(int offset) const {
    return {__shfl_down_sync(0xffffffffu, sum, offset), __shfl_down_sync(0xffffffffu, lo, offset),
            __shfl_down_sync(0xffffffffu, nan, offset)};
  }
};

template <typename S>
__device__ S warp_reduce(S s) {
  for (int offset = 16; offset > 0; offset >>= 1) s.merge(s.shfl_down(offset));
  return s;
}

// Threads per row: 32 (kThreads / 32 rows per block) or kThreads (one row per block).
template <int kRowThreads, typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    row_stats_kernel(const scalar_t* __restrict__ g, int64_t R, int64_t D,
                     at::opmath_type<scalar_t>* __restrict__ sum, scalar_t* __restrict__ mn) {
  using opmath_t = at::opmath_type<scalar_t>;
  using S = Stats<opmath_t>;
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kRowThreads;
  if (row >= R) return;  // whole warps (or the whole block) leave together
  const int lane = threadIdx.x % kRowThreads;
  const scalar_t* r = g + row * D;
  S s{0, std::numeric_limits<opmath_t>::infinity(), 0};
  for (int64_t j = lane; j < D; j += kRowThreads) {
    const opmath_t v = static_cast<opmath_t>(r[j]);
    s.sum += v;
    s.lo = fc::take_min(s.lo, v);
    s.nan += fc::is_nan(v);
  }
  s = warp_reduce(s);
  if constexpr (kRowThreads > 32) {
    __shared__ S warp_stats[kWarps];
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) warp_stats[warp] = s;
    __syncthreads();
    if (threadIdx.x != 0) return;
    for (int k = 1; k < kWarps; ++k) s.merge(warp_stats[k]);
  } else {
    if (lane != 0) return;
  }
  sum[row] = s.sum;
  mn[row] = static_cast<scalar_t>(fc::finish_min(s.lo, s.nan));
}

std::tuple<at::Tensor, at::Tensor> fc_row_stats_cuda(const at::Tensor& g_in) {
  constexpr const char* op = "fastleak::fc_row_stats";
  fc::check_input(g_in, op);
  const int64_t D = g_in.size(-1);
  const c10::cuda::CUDAGuard guard(g_in.device());
  const at::Tensor g = g_in.contiguous();
  const int64_t R = g.numel() / D;
  at::Tensor sum, min;
  std::tie(sum, min) = fc::empty_outputs(g);
  if (R == 0) return {sum, min};
  const bool warp_rows = D <= kWarpRowMaxD;
  const int64_t blocks = warp_rows ? (R + kWarps - 1) / kWarps : R;
  TORCH_CHECK_VALUE(blocks <= std::numeric_limits<int32_t>::max(), op, ": g has too many rows (", R, ")");
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), op, [&] {
    const auto kernel = warp_rows ? row_stats_kernel<32, scalar_t> : row_stats_kernel<kThreads, scalar_t>;
    kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        g.const_data_ptr<scalar_t>(), R, D, sum.mutable_data_ptr<at::opmath_type<scalar_t>>(),
        min.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {sum, min};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CUDA, m) {
  m.impl("fc_row_stats", &fc_row_stats_cuda);
}

}  // namespace fastleak
