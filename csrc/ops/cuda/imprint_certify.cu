// CUDA kernel of fastleak::imprint_certify: one block per row (bin), grid-stride over the rows.
// Each thread writes a fixed strided share of the row's input (as imprint_recover does) and
// accumulates its statistics; a fixed-order tree of warp shuffles and shared memory combines them:
// deterministic, no atomics.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "../imprint_certify.h"
#include "../imprint_recover_host.h"
#include "../imprint_recover_math.h"

namespace fastleak {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxBlocks = 65535;

template <typename opmath_t>
struct RowStats {
  opmath_t off, lo, hi;
  double measured;
  int bad;

  __device__ void merge(const RowStats& o) {
    off = o.off > off ? o.off : off;
    lo = o.lo < lo ? o.lo : lo;
    hi = o.hi > hi ? o.hi : hi;
    measured += o.measured;
    bad |= o.bad;
  }
  __device__ RowStats shfl_down(int offset) const {
    return {__shfl_down_sync(0xffffffffu, off, offset), __shfl_down_sync(0xffffffffu, lo, offset),
            __shfl_down_sync(0xffffffffu, hi, offset), __shfl_down_sync(0xffffffffu, measured, offset),
            __shfl_down_sync(0xffffffffu, bad, offset)};
  }
};

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    imprint_certify_kernel(const scalar_t* __restrict__ w, const scalar_t* __restrict__ b,
                           const scalar_t* __restrict__ u, int64_t R, int64_t K, int64_t D, int64_t per_group,
                           bool cumulative, double grid_low, double grid_scale,
                           scalar_t* __restrict__ images, scalar_t* __restrict__ bias_diff,
                           scalar_t* __restrict__ stats) {
  using opmath_t = at::opmath_type<scalar_t>;
  using S = RowStats<opmath_t>;
  __shared__ S warp_stats[kWarps];
  const opmath_t low = static_cast<opmath_t>(grid_low), scale = static_cast<opmath_t>(grid_scale);
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const bool has_next = cumulative && (r % K) + 1 < K;
    const scalar_t db = imprint::bin_difference(b[r], has_next ? b[r + 1] : scalar_t(0));
    const scalar_t* row = w + r * D;
    const scalar_t* measurement = u != nullptr ? u + ((r % K) / per_group) * D : nullptr;
    scalar_t* image = images + r * D;
    S s{0, std::numeric_limits<opmath_t>::infinity(), -std::numeric_limits<opmath_t>::infinity(), 0.0, 0};
    for (int64_t j = threadIdx.x; j < D; j += kThreads) {
      const scalar_t v = imprint::bin_input(imprint::bin_difference(row[j], has_next ? row[j + D] : scalar_t(0)), db);
      image[j] = v;
      const opmath_t a = static_cast<opmath_t>(v);
      s.lo = a < s.lo ? a : s.lo;
      s.hi = a > s.hi ? a : s.hi;
      s.bad |= imprint::not_finite(a);
      const opmath_t o = imprint::grid_offset(a, low, scale);   // 0 without a grid (scale 0)
      s.off = o > s.off ? o : s.off;
      if (measurement != nullptr) s.measured += double(a) * double(measurement[j]);
    }
    for (int offset = 16; offset > 0; offset >>= 1) s.merge(s.shfl_down(offset));
    if (threadIdx.x % 32 == 0) warp_stats[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int k = 1; k < kWarps; ++k) s.merge(warp_stats[k]);
      if (D == 0) s.lo = s.hi = 0;
      const opmath_t nan = std::numeric_limits<opmath_t>::quiet_NaN();
      scalar_t* out = stats + r * imprint::kNumStats;
      out[imprint::kOffGrid] = static_cast<scalar_t>(s.bad ? nan : s.off);
      out[imprint::kLow] = static_cast<scalar_t>(s.bad ? nan : s.lo);
      out[imprint::kHigh] = static_cast<scalar_t>(s.bad ? nan : s.hi);
      out[imprint::kMeasured] = static_cast<scalar_t>(s.bad ? double(nan) : s.measured);
      out[imprint::kFinite] = static_cast<scalar_t>(s.bad ? 0 : 1);
      bias_diff[r] = db;
    }
    __syncthreads();  // warp_stats is reused by the next row
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> imprint_certify_cuda(const at::Tensor& grad_weight,
                                                                    const at::Tensor& grad_bias, bool cumulative,
                                                                    const c10::optional<at::Tensor>& measurement,
                                                                    double low, double high, int64_t levels) {
  constexpr const char* op = "fastleak::imprint_certify";
  const c10::cuda::CUDAGuard guard(grad_weight.device());
  const imprint::CertifyProblem p =
      imprint::certify_problem(grad_weight, grad_bias, measurement, low, high, levels, op);
  if (p.R == 0) return {p.images, p.bias_diff, p.stats};
  const int64_t blocks = std::min(kMaxBlocks, p.R);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(p.grad_weight.scalar_type(), op, [&] {
    imprint_certify_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        p.grad_weight.const_data_ptr<scalar_t>(), p.grad_bias.const_data_ptr<scalar_t>(),
        p.measurement.defined() ? p.measurement.const_data_ptr<scalar_t>() : nullptr, p.R, p.K, p.D, p.per_group,
        cumulative, p.low, p.scale, p.images.mutable_data_ptr<scalar_t>(), p.bias_diff.mutable_data_ptr<scalar_t>(),
        p.stats.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {p.images, p.bias_diff, p.stats};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CUDA, m) {
  m.impl("imprint_certify", &imprint_certify_cuda);
}

}  // namespace fastleak
