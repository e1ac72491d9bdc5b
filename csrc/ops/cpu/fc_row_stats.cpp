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

#include "../fc_row_stats_math.h"
#include "../fc_row_stats_host.h"

namespace fastleak {
namespace {

constexpr int kLanes = 16;

template <typename scalar_t, typename sum_t>
void reduce_row(const scalar_t* row, int64_t D, sum_t* sum_out, scalar_t* min_out, scalar_t* max_out,
                int64_t* neg_out) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr opmath_t inf = std::numeric_limits<opmath_t>::infinity();
  double sum[kLanes];
  opmath_t lo[kLanes], hi[kLanes];
  int64_t neg[kLanes], nan[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    sum[l] = 0;
    lo[l] = inf;
    hi[l] = -inf;
    neg[l] = 0;
    nan[l] = 0;
  }
  const int64_t body = D - D % kLanes;
  for (int64_t j = 0; j < body; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const opmath_t v = opmath_t(row[j + l]);
      sum[l] += v;
      lo[l] = fc::take_min(lo[l], v);
      hi[l] = fc::take_max(hi[l], v);
      neg[l] += fc::is_negative(v);
      nan[l] += fc::is_nan(v);
    }
  }
  for (int64_t j = body; j < D; ++j) {
    const int l = static_cast<int>(j - body);
    const opmath_t v = opmath_t(row[j]);
    sum[l] += v;
    lo[l] = fc::take_min(lo[l], v);
    hi[l] = fc::take_max(hi[l], v);
    neg[l] += fc::is_negative(v);
    nan[l] += fc::is_nan(v);
  }
  for (int l = 1; l < kLanes; ++l) {
    sum[0] += sum[l];
    lo[0] = fc::take_min(lo[0], lo[l]);
    hi[0] = fc::take_max(hi[0], hi[l]);
    neg[0] += neg[l];
    nan[0] += nan[l];
  }
  *sum_out = static_cast<sum_t>(sum[0]);
  *min_out = static_cast<scalar_t>(fc::finish_extremum(lo[0], nan[0]));
  *max_out = static_cast<scalar_t>(fc::finish_extremum(hi[0], nan[0]));
  *neg_out = neg[0];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fc_row_stats_cpu(const at::Tensor& g_in) {
  constexpr const char* op = "fastleak::fc_row_stats";
  fc::check_input(g_in, op);
  const int64_t D = g_in.size(-1);
  const at::Tensor g = g_in.contiguous();
  const int64_t R = g.numel() / D;
  at::Tensor sum, mn, mx, neg;
  std::tie(sum, mn, mx, neg) = fc::empty_outputs(g);
  if (R == 0) return {sum, mn, mx, neg};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), op, [&] {
    using sum_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* data = g.const_data_ptr<scalar_t>();
    sum_t* s = sum.mutable_data_ptr<sum_t>();
    scalar_t* lo = mn.mutable_data_ptr<scalar_t>();
    scalar_t* hi = mx.mutable_data_ptr<scalar_t>();
    int64_t* nc = neg.mutable_data_ptr<int64_t>();
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / D);
    at::parallel_for(0, R, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        reduce_row(data + r * D, D, s + r, lo + r, hi + r, nc + r);
      }
    });
  });
  return {sum, mn, mx, neg};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CPU, m) {
  m.impl("fc_row_stats", &fc_row_stats_cpu);
}

}  // namespace fastleak
