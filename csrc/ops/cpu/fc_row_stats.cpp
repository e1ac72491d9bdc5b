// CPU kernel of fastleak::fc_row_stats: one pass over each row, rows in parallel.
// Each row is reduced by one thread through a fixed set of lanes, combined in a fixed
// order, so results do not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "../fc_row_stats_host.h"
#include "../fc_row_stats_math.h"
#include "avx2_clone.h"

namespace fastleak {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kBlock = 64 * kLanes;

// Lanes accumulate kBlock elements in the input's opmath type, which vectorises, and each
// block's lane sums are then added in double. NaNs are ignored by the lane minima and looked
// for only when the sum says one may be there (a NaN, or both infinities, make the sum NaN).
template <typename scalar_t>
FL_AVX2_CLONE void reduce_row(const scalar_t* row, int64_t D, at::opmath_type<scalar_t>* sum_out, scalar_t* min_out) {
  using opmath_t = at::opmath_type<scalar_t>;
  double sum[kLanes];
  opmath_t lo[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    sum[l] = 0;
    lo[l] = std::numeric_limits<opmath_t>::infinity();
  }
  const int64_t body = D - D % kLanes;
  for (int64_t start = 0; start < body; start += kBlock) {
    const int64_t stop = std::min(body, start + kBlock);
    opmath_t part[kLanes] = {};
    for (int64_t j = start; j < stop; j += kLanes) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const opmath_t v = opmath_t(row[j + l]);
        part[l] += v;
        lo[l] = fc::take_min(lo[l], v);
      }
    }
    for (int l = 0; l < kLanes; ++l) sum[l] += part[l];
  }
  for (int64_t j = body; j < D; ++j) {
    const int l = static_cast<int>(j - body);
    const opmath_t v = opmath_t(row[j]);
    sum[l] += v;
    lo[l] = fc::take_min(lo[l], v);
  }
  for (int l = 1; l < kLanes; ++l) {
    sum[0] += sum[l];
    lo[0] = fc::take_min(lo[0], lo[l]);
  }
  int64_t nan = 0;
  if (sum[0] != sum[0]) {
    for (int64_t j = 0; j < D; ++j) nan += fc::is_nan(opmath_t(row[j]));
  }
  *sum_out = static_cast<opmath_t>(sum[0]);
  *min_out = static_cast<scalar_t>(fc::finish_min(lo[0], nan));
}

std::tuple<at::Tensor, at::Tensor> fc_row_stats_cpu(const at::Tensor& g_in) {
  constexpr const char* op = "fastleak::fc_row_stats";
  fc::check_input(g_in, op);
  const int64_t D = g_in.size(-1);
  const at::Tensor g = g_in.contiguous();
  const int64_t R = g.numel() / D;
  at::Tensor sum, min;
  std::tie(sum, min) = fc::empty_outputs(g);
  if (R == 0) return {sum, min};
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), op, [&] {
    const scalar_t* data = g.const_data_ptr<scalar_t>();
    auto* s = sum.mutable_data_ptr<at::opmath_type<scalar_t>>();
    scalar_t* lo = min.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / D);
    at::parallel_for(0, R, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) reduce_row(data + r * D, D, s + r, lo + r);
    });
  });
  return {sum, min};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CPU, m) {
  m.impl("fc_row_stats", &fc_row_stats_cpu);
}

}  // namespace fastleak
