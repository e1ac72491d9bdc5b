// CPU kernel of fastleak::imprint_certify: rows (bins) in parallel; each row's input is written as
// imprint_recover writes it and its statistics are then reduced while the row is still in cache,
// through a fixed set of lanes combined in a fixed order, so results do not depend on the thread
// count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "../imprint_certify.h"
#include "../imprint_recover_host.h"
#include "../imprint_recover_math.h"
#include "avx2_clone.h"

namespace fastleak {
namespace {

constexpr int kLanes = 16;

struct Grid {
  double low, scale;
};

// Without a grid, scale 0 puts every finite value on it; without a measurement (kMeasured false)
// the row's own values stand in for it and the sum is discarded.
template <bool kMeasured, typename scalar_t>
FL_AVX2_CLONE void certify_row(const scalar_t* weight, const scalar_t* next_weight, scalar_t bias_diff, int64_t D,
                               const scalar_t* measurement, Grid grid, scalar_t* image, scalar_t* stats) {
  using opmath_t = at::opmath_type<scalar_t>;
  if (next_weight == nullptr) {
    for (int64_t d = 0; d < D; ++d)
      image[d] = imprint::bin_input(imprint::bin_difference(weight[d], scalar_t(0)), bias_diff);
  } else {
    for (int64_t d = 0; d < D; ++d)
      image[d] = imprint::bin_input(imprint::bin_difference(weight[d], next_weight[d]), bias_diff);
  }
  const opmath_t low = static_cast<opmath_t>(grid.low), scale = static_cast<opmath_t>(grid.scale);
  opmath_t off[kLanes], lo[kLanes], hi[kLanes];
  opmath_t measured[kLanes];
  int bad[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    off[l] = 0;
    lo[l] = std::numeric_limits<opmath_t>::infinity();
    hi[l] = -std::numeric_limits<opmath_t>::infinity();
    measured[l] = 0;
    bad[l] = 0;
  }
  const int64_t body = D - D % kLanes;
  for (int64_t j = 0; j < body; j += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const opmath_t v = static_cast<opmath_t>(image[j + l]);
      lo[l] = v < lo[l] ? v : lo[l];
      hi[l] = v > hi[l] ? v : hi[l];
      bad[l] |= imprint::not_finite(v);
      const opmath_t o = imprint::grid_offset(v, low, scale);
      off[l] = o > off[l] ? o : off[l];
      if constexpr (kMeasured) measured[l] += v * static_cast<opmath_t>(measurement[j + l]);
    }
  }
  for (int64_t j = body; j < D; ++j) {
    const int l = static_cast<int>(j - body);
    const opmath_t v = static_cast<opmath_t>(image[j]);
    lo[l] = v < lo[l] ? v : lo[l];
    hi[l] = v > hi[l] ? v : hi[l];
    bad[l] |= imprint::not_finite(v);
    const opmath_t o = imprint::grid_offset(v, low, scale);
    off[l] = o > off[l] ? o : off[l];
    if constexpr (kMeasured) measured[l] += v * static_cast<opmath_t>(measurement[j]);
  }
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += measured[l];
  for (int l = 1; l < kLanes; ++l) {
    off[0] = off[l] > off[0] ? off[l] : off[0];
    lo[0] = lo[l] < lo[0] ? lo[l] : lo[0];
    hi[0] = hi[l] > hi[0] ? hi[l] : hi[0];
    bad[0] |= bad[l];
  }
  if (D == 0) lo[0] = hi[0] = 0;
  const opmath_t nan = std::numeric_limits<opmath_t>::quiet_NaN();
  stats[imprint::kOffGrid] = static_cast<scalar_t>(bad[0] ? nan : off[0]);
  stats[imprint::kLow] = static_cast<scalar_t>(bad[0] ? nan : lo[0]);
  stats[imprint::kHigh] = static_cast<scalar_t>(bad[0] ? nan : hi[0]);
  stats[imprint::kMeasured] = static_cast<scalar_t>(bad[0] ? double(nan) : total);
  stats[imprint::kFinite] = static_cast<scalar_t>(bad[0] ? 0 : 1);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> imprint_certify_cpu(const at::Tensor& grad_weight,
                                                                   const at::Tensor& grad_bias, bool cumulative,
                                                                   const c10::optional<at::Tensor>& measurement,
                                                                   double low, double high, int64_t levels) {
  constexpr const char* op = "fastleak::imprint_certify";
  const imprint::CertifyProblem p =
      imprint::certify_problem(grad_weight, grad_bias, measurement, low, high, levels, op);
  if (p.R == 0) return {p.images, p.bias_diff, p.stats};
  const Grid grid{p.low, p.scale};
  const int64_t K = p.K, D = p.D;
  AT_DISPATCH_FLOATING_TYPES(p.grad_weight.scalar_type(), op, [&] {
    const scalar_t* w = p.grad_weight.const_data_ptr<scalar_t>();
    const scalar_t* b = p.grad_bias.const_data_ptr<scalar_t>();
    const scalar_t* u = p.measurement.defined() ? p.measurement.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* out = p.images.mutable_data_ptr<scalar_t>();
    scalar_t* db = p.bias_diff.mutable_data_ptr<scalar_t>();
    scalar_t* st = p.stats.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(D, 1));
    at::parallel_for(0, p.R, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const bool has_next = cumulative && (r % K) + 1 < K;
        db[r] = imprint::bin_difference(b[r], has_next ? b[r + 1] : scalar_t(0));
        const scalar_t* next = has_next ? w + (r + 1) * D : nullptr;
        if (u != nullptr) {
          certify_row<true>(w + r * D, next, db[r], D, u + ((r % K) / p.per_group) * D, grid, out + r * D,
                            st + r * imprint::kNumStats);
        } else {
          certify_row<false>(w + r * D, next, db[r], D, u, grid, out + r * D, st + r * imprint::kNumStats);
        }
      }
    });
  });
  return {p.images, p.bias_diff, p.stats};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CPU, m) {
  m.impl("imprint_certify", &imprint_certify_cpu);
}

}  // namespace fastleak
