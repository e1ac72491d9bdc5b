// CUDA kernels of fastleak::grad_distance_partials and fastleak::grad_distance_backward.
//
// Multi-tensor launches: the addresses, sizes and block offsets of up to kMaxTensors tensors
// travel in the kernel-argument struct, and each block takes one (tensor, restart, chunk of
// kChunk elements). For the partial sums, each block reduces its chunk (in opmath per thread,
// in double across the block) into its own slot; a second kernel adds every (restart, tensor)'s
// slots in chunk order. No atomics: results are bitwise identical from run to run.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../grad_distance_host.h"
#include "../grad_distance_math.h"

namespace fastleak {

namespace {

using namespace grad_distance;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kChunk = 16384;  // elements per block
constexpr int kMaxTensors = 48;    // tensors per launch (kernel arguments stay under 4 KiB)
constexpr int kMaxCombine = 192;   // tensors per launch of the combining kernel
constexpr int kCombineThreads = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename scalar_t>
struct PartialsArgs {
  const scalar_t* rec[kMaxTensors];
  const scalar_t* target[kMaxTensors];
  int64_t numel[kMaxTensors];        // elements per restart
  int64_t chunks[kMaxTensors];       // chunks per restart
  int64_t block_start[kMaxTensors];  // first block of each tensor in this launch
  int count;
  int64_t slot_base;  // slot of this launch's block 0
  bool row_targets;   // target[i] has one row per restart
};

template <typename scalar_t>
struct BackwardArgs {
  const scalar_t* rec[kMaxTensors];
  const scalar_t* target[kMaxTensors];
  scalar_t* out[kMaxTensors];
  int64_t numel[kMaxTensors];
  int64_t chunks[kMaxTensors];
  int64_t block_start[kMaxTensors];
  int64_t index[kMaxTensors];  // position in the op's tensor list (column of the coefficients)
  int count;
  bool row_targets;
};

struct CombineArgs {
  int64_t slot_base[kMaxCombine];  // slot of (restart 0, chunk 0) of each tensor
  int64_t chunks[kMaxCombine];
  int64_t first_tensor;
  int count;
};

struct BlockWork {
  int entry;
  int64_t restart;
  int64_t begin;
  int64_t len;
};

// Locates this block's (tensor, restart, chunk): the last entry whose first block is <= blockIdx.x.
template <typename Args>
__device__ __forceinline__ BlockWork locate_block(const Args& args) {
  const int64_t block = blockIdx.x;
  int lo = 0;
  int hi = args.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (args.block_start[mid] <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int64_t local = block - args.block_start[lo];
  const int64_t restart = local / args.chunks[lo];
  const int64_t begin = (local - restart * args.chunks[lo]) * kChunk;
  return {lo, restart, begin, ::min(kChunk, args.numel[lo] - begin)};
}

// Fixed-shape tree reduction of four values over the block; thread 0 ends with the totals.
__device__ __forceinline__ void block_reduce(double (&v)[kSlots]) {
  __shared__ double partial[kWarps][kSlots];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v[s] += __shfl_down_sync(0xffffffffu, v[s], offset);
    if (lane == 0) partial[warp][s] = v[s];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      v[s] = lane < kWarps ? partial[lane][s] : 0.0;
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) v[s] += __shfl_down_sync(0xffffffffu, v[s], offset);
    }
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) partials_kernel(const PartialsArgs<scalar_t> args, double* slots) {
  using opmath_t = at::opmath_type<scalar_t>;
  const BlockWork w = locate_block(args);
  const int64_t row = w.restart * args.numel[w.entry];
  const scalar_t* r = args.rec[w.entry] + row + w.begin;
  const scalar_t* t = args.target[w.entry] + (args.row_targets ? row : 0) + w.begin;
  opmath_t diff2 = 0, dot = 0, rec_sq = 0, tgt_sq = 0;
#pragma unroll 4
  for (int64_t k = threadIdx.x; k < w.len; k += kThreads) {
    accumulate<opmath_t>(static_cast<opmath_t>(r[k]), static_cast<opmath_t>(t[k]), diff2, dot, rec_sq, tgt_sq);
  }
  double v[kSlots];
  v[kDiff2] = diff2;
  v[kDot] = dot;
  v[kRecSq] = rec_sq;
  v[kTgtSq] = tgt_sq;
  block_reduce(v);
  if (threadIdx.x == 0) {
    double* slot = slots + (args.slot_base + blockIdx.x) * kSlots;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) slot[s] = v[s];
  }
}

// One warp per (tensor, restart): lane l adds chunks l, l + 32, ... in order, then a fixed
// shuffle tree adds the lanes.
template <typename opmath_t>
__global__ void __launch_bounds__(kCombineThreads) combine_kernel(const CombineArgs args, const double* slots,
                                                                  opmath_t* out, int64_t restarts, int64_t n_tensors) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * kCombineThreads + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= args.count * restarts) return;
  const int64_t entry = warp / restarts;
  const int64_t restart = warp - entry * restarts;
  const int64_t chunks = args.chunks[entry];
  const double* slot = slots + (args.slot_base[entry] + restart * chunks) * kSlots;
  double v[kSlots] = {0.0, 0.0, 0.0, 0.0};
  for (int64_t c = lane; c < chunks; c += 32) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) v[s] += slot[c * kSlots + s];
  }
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v[s] += __shfl_down_sync(0xffffffffu, v[s], offset);
  }
  if (lane == 0) {
    opmath_t* o = out + (restart * n_tensors + args.first_tensor + entry) * kSlots;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) o[s] = static_cast<opmath_t>(v[s]);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) backward_kernel(const BackwardArgs<scalar_t> args,
                                                            const at::opmath_type<scalar_t>* coef_rec,
                                                            const at::opmath_type<scalar_t>* coef_target,
                                                            int64_t n_tensors) {
  using opmath_t = at::opmath_type<scalar_t>;
  const BlockWork w = locate_block(args);
  const int64_t offset = w.restart * args.numel[w.entry] + w.begin;
  const scalar_t* r = args.rec[w.entry] + offset;
  const scalar_t* t = args.target[w.entry] + (args.row_targets ? offset : w.begin);
  scalar_t* o = args.out[w.entry] + offset;
  const int64_t c = w.restart * n_tensors + args.index[w.entry];
  const opmath_t cr = coef_rec[c];
  const opmath_t ct = coef_target[c];
#pragma unroll 4
  for (int64_t k = threadIdx.x; k < w.len; k += kThreads) {
    o[k] = static_cast<scalar_t>(
        backward_value<opmath_t>(cr, static_cast<opmath_t>(r[k]), ct, static_cast<opmath_t>(t[k])));
  }
}

std::vector<at::Tensor> contiguous_all(at::TensorList xs) {
  std::vector<at::Tensor> out;
  out.reserve(xs.size());
  for (const auto& x : xs) out.push_back(x.contiguous());
  return out;
}

at::Tensor partials_cuda(at::TensorList rec_in, at::TensorList target_in, bool batched, bool row_targets) {
  constexpr const char* op = "grad_distance_partials";
  const int64_t restarts = check_inputs(op, rec_in, target_in, batched, row_targets);
  TORCH_CHECK_VALUE(rec_in[0].is_cuda(), op, ": rec[0] must be a CUDA tensor for the CUDA kernel, got ",
                    rec_in[0].device());
  const c10::cuda::CUDAGuard guard(rec_in[0].device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = static_cast<int64_t>(rec_in.size());
  const auto rec = contiguous_all(rec_in);
  const auto target = contiguous_all(target_in);

  std::vector<int64_t> chunks(n), slot_base(n);
  int64_t total_blocks = 0;
  for (int64_t i = 0; i < n; ++i) {
    chunks[i] = ceil_div(numel_per_restart(target[i], row_targets), kChunk);
    slot_base[i] = total_blocks;
    total_blocks += restarts * chunks[i];
  }
  at::Tensor out = at::empty({restarts, n, kSlots}, rec[0].options().dtype(at::toOpMathType(rec[0].scalar_type())));
  at::Tensor slots = at::empty({std::max<int64_t>(total_blocks, 1), kSlots}, rec[0].options().dtype(at::kDouble));

  AT_DISPATCH_FLOATING_TYPES(rec[0].scalar_type(), "grad_distance_partials_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    PartialsArgs<scalar_t> args{};
    args.row_targets = row_targets;
    int64_t launch_blocks = 0;
    const auto launch = [&] {
      if (launch_blocks > 0) {
        partials_kernel<scalar_t><<<static_cast<unsigned>(launch_blocks), kThreads, 0, stream>>>(
            args, slots.data_ptr<double>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      args.slot_base += launch_blocks;
      args.count = 0;
      launch_blocks = 0;
    };
    for (int64_t i = 0; i < n; ++i) {
      const int64_t blocks = restarts * chunks[i];
      if (blocks == 0) continue;
      if (args.count == kMaxTensors) launch();
      const int e = args.count++;
      args.rec[e] = rec[i].const_data_ptr<scalar_t>();
      args.target[e] = target[i].const_data_ptr<scalar_t>();
      args.numel[e] = numel_per_restart(target[i], row_targets);
      args.chunks[e] = chunks[i];
      args.block_start[e] = launch_blocks;
      launch_blocks += blocks;
    }
    launch();

    CombineArgs cargs{};
    for (int64_t first = 0; first < n; first += kMaxCombine) {
      cargs.first_tensor = first;
      cargs.count = static_cast<int>(std::min<int64_t>(kMaxCombine, n - first));
      for (int e = 0; e < cargs.count; ++e) {
        cargs.slot_base[e] = slot_base[first + e];
        cargs.chunks[e] = chunks[first + e];
      }
      const int64_t warps = cargs.count * restarts;
      if (warps == 0) continue;
      combine_kernel<opmath_t><<<static_cast<unsigned>(ceil_div(warps * 32, kCombineThreads)), kCombineThreads, 0,
                                 stream>>>(
          cargs, slots.const_data_ptr<double>(), out.data_ptr<opmath_t>(), restarts, n);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return out;
}

std::vector<at::Tensor> backward_cuda(at::TensorList rec_in, at::TensorList target_in, const at::Tensor& coef_rec_in,
                                      const at::Tensor& coef_target_in, bool batched, bool row_targets) {
  constexpr const char* op = "grad_distance_backward";
  const int64_t restarts = check_inputs(op, rec_in, target_in, batched, row_targets);
  TORCH_CHECK_VALUE(rec_in[0].is_cuda(), op, ": rec[0] must be a CUDA tensor for the CUDA kernel, got ",
                    rec_in[0].device());
  const int64_t n = static_cast<int64_t>(rec_in.size());
  check_coef(op, "coef_rec", coef_rec_in, rec_in[0], restarts, n);
  check_coef(op, "coef_target", coef_target_in, rec_in[0], restarts, n);
  const c10::cuda::CUDAGuard guard(rec_in[0].device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const auto rec = contiguous_all(rec_in);
  const auto target = contiguous_all(target_in);
  const at::Tensor coef_rec = coef_rec_in.contiguous();
  const at::Tensor coef_target = coef_target_in.contiguous();
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (const auto& r : rec_in) out.push_back(at::empty(r.sizes(), r.options()));

  AT_DISPATCH_FLOATING_TYPES(rec[0].scalar_type(), "grad_distance_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    BackwardArgs<scalar_t> args{};
    args.row_targets = row_targets;
    int64_t launch_blocks = 0;
    const auto launch = [&] {
      if (launch_blocks > 0) {
        backward_kernel<scalar_t><<<static_cast<unsigned>(launch_blocks), kThreads, 0, stream>>>(
            args, coef_rec.const_data_ptr<opmath_t>(), coef_target.const_data_ptr<opmath_t>(), n);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      args.count = 0;
      launch_blocks = 0;
    };
    for (int64_t i = 0; i < n; ++i) {
      const int64_t numel = numel_per_restart(target[i], row_targets);
      const int64_t chunks = ceil_div(numel, kChunk);
      const int64_t blocks = restarts * chunks;
      if (blocks == 0) continue;
      if (args.count == kMaxTensors) launch();
      const int e = args.count++;
      args.rec[e] = rec[i].const_data_ptr<scalar_t>();
      args.target[e] = target[i].const_data_ptr<scalar_t>();
      args.out[e] = out[i].data_ptr<scalar_t>();
      args.numel[e] = numel;
      args.chunks[e] = chunks;
      args.block_start[e] = launch_blocks;
      args.index[e] = i;
      launch_blocks += blocks;
    }
    launch();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CUDA, m) {
  m.impl("grad_distance_partials", &partials_cuda);
  m.impl("grad_distance_backward", &backward_cuda);
}

}  // namespace fastleak
