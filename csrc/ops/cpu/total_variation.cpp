// CPU kernels of fastleak::total_variation and its backward.
// Work is split into (image, channel, block of rows) items of a size that does not depend
// on the thread count; per-item partial sums are combined in a fixed order, so results are
// bitwise reproducible for any number of threads (on one machine: the instruction-set variant
// picked at load time, see FL_CPU_MULTIVERSION, fixes the order of the vector sums).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../total_variation_math.h"
#include "../total_variation_host.h"

namespace fastleak {
namespace {

constexpr int64_t kItemElems = int64_t(1) << 15;
constexpr int64_t kSegment = 2048;
constexpr int64_t kWideRow = 128;
constexpr int64_t kGradBlockElems = 4096;

// Row loops are compiled for several instruction sets and picked at load time; flatten
// inlines the shared per-element math into each variant.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FL_CPU_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#else
#define FL_CPU_MULTIVERSION
#endif

struct Geometry {
  int64_t N, C, H, W;
  int64_t rows_per_item, items_per_plane;

  explicit Geometry(const at::Tensor& x)
      : N(x.size(0)), C(x.size(1)), H(x.size(2)), W(x.size(3)) {
    rows_per_item = std::max<int64_t>(1, kItemElems / std::max<int64_t>(W, 1));
    items_per_plane = H > 0 && W > 0 ? (H + rows_per_item - 1) / rows_per_item : 0;
  }
  int64_t items() const { return N * C * items_per_plane; }
};

// Sum of f(i) for i in [0, n): opmath_t sums over fixed segments, added up in double.
template <typename opmath_t, typename F>
inline double segmented_sum(int64_t n, const F& f) {
  double total = 0;
  for (int64_t s = 0; s < n; s += kSegment) {
    const int64_t e = std::min(n, s + kSegment);
    opmath_t acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = s; i < e; ++i) acc += f(i);
    total += acc;
  }
  return total;
}

// Sums of penalty<P>(x[h, w+1] - x[h, w]) and penalty<P>(x[h+1, w] - x[h, w]) over `rows` rows of a
// plane starting at `base`, of which the first `vrows` have a row below; `scratch` holds
// max(rows * W, 2 * kSegment) values.
// Wide rows: within each segment of columns, every column accumulates its own opmath_t sums over
// the rows (independent vector adds rather than one latency-bound reduction chain); the column
// sums are added up in double. Narrow rows would spend more on per-row loop overhead than on the
// pairs, so there the rows form one flat range: the horizontal penalties go to `scratch`, those
// of the pairs that would cross a row end are zeroed, and both directions are summed flat.
template <int P, typename scalar_t, typename opmath_t>
FL_CPU_MULTIVERSION void rows_sums(const scalar_t* base, int64_t rows, int64_t vrows, int64_t W, opmath_t* scratch,
                                   double& sh, double& sv) {
  auto diff = [&](int64_t i, int64_t j) { return tv::penalty<P>(opmath_t(base[j]) - opmath_t(base[i])); };
  sh = sv = 0;
  if (W >= kWideRow) {
    opmath_t* col_h = scratch;
    opmath_t* col_v = scratch + kSegment;
    for (int64_t s = 0; s < W; s += kSegment) {
      const int64_t len = std::min(kSegment, W - s);
      const int64_t len_h = std::min(len, W - 1 - s);  // horizontal pairs that start in the segment
      std::fill(col_h, col_h + len, opmath_t(0));
      std::fill(col_v, col_v + len, opmath_t(0));
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = r * W + s;
#pragma omp simd
        for (int64_t w = 0; w < len_h; ++w) col_h[w] += diff(i + w, i + w + 1);
        if (r < vrows) {
#pragma omp simd
          for (int64_t w = 0; w < len; ++w) col_v[w] += diff(i + w, i + w + W);
        }
      }
      sh += segmented_sum<opmath_t>(len, [&](int64_t w) { return col_h[w]; });
      sv += segmented_sum<opmath_t>(len, [&](int64_t w) { return col_v[w]; });
    }
    return;
  }
  const int64_t n = rows * W;
#pragma omp simd
  for (int64_t i = 0; i < n - 1; ++i) scratch[i] = diff(i, i + 1);
  for (int64_t r = 0; r < rows; ++r) scratch[r * W + W - 1] = 0;
  sh = segmented_sum<opmath_t>(n, [&](int64_t i) { return scratch[i]; });
  sv = segmented_sum<opmath_t>(vrows * W, [&](int64_t i) { return diff(i, i + W); });
}

template <int P, typename scalar_t>
void forward_impl(const scalar_t* x, const Geometry& g, at::opmath_type<scalar_t>* out) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t items = g.items();
  std::vector<double> partial(2 * items);
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> scratch(std::max(g.rows_per_item * g.W, 2 * kSegment));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / g.items_per_plane;
      const int64_t h0 = (item % g.items_per_plane) * g.rows_per_item;
      const int64_t h1 = std::min(g.H, h0 + g.rows_per_item);
      rows_sums<P>(x + (plane * g.H + h0) * g.W, h1 - h0, std::min(h1, g.H - 1) - h0, g.W, scratch.data(),
                partial[2 * item], partial[2 * item + 1]);
    }
  });
  const double wh = tv::mean_weight<double>(g.C * g.H * (g.W - 1));
  const double wv = tv::mean_weight<double>(g.C * (g.H - 1) * g.W);
  const int64_t per_image = g.C * g.items_per_plane;
  for (int64_t n = 0; n < g.N; ++n) {
    double sh = 0, sv = 0;
    for (int64_t i = n * per_image; i < (n + 1) * per_image; ++i) {
      sh += partial[2 * i];
      sv += partial[2 * i + 1];
    }
    out[n] = static_cast<opmath_t>(sh * wh + sv * wv);
  }
}

at::Tensor total_variation_cpu(const at::Tensor& x_in, int64_t p) {
  constexpr const char* op = "fastleak::total_variation";
  tv::check_input(x_in, p, op);
  const at::Tensor x = x_in.contiguous();
  const Geometry g(x);
  at::Tensor out = at::zeros({g.N}, x.options().dtype(at::toOpMathType(x.scalar_type())));
  if (g.items() == 0) return out;
  tv::dispatch_exponent(p, [&](auto exponent) {
    constexpr int P = decltype(exponent)::value;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), op, [&] {
      forward_impl<P>(x.const_data_ptr<scalar_t>(), g, out.mutable_data_ptr<at::opmath_type<scalar_t>>());
    });
  });
  return out;
}

// Gradient of rows [h0, h1) of one plane, a gather, in blocks of rows small enough for their
// `pairs` to stay in L1: the derivatives of the block's horizontal pairs are computed once over
// its rows as one flat range into `pairs` (pairs[0] is the missing left pair of the first pixel;
// those that would cross a row end are zeroed), then every pixel combines its two pairs with its
// vertical neighbours. Rows with the same vertical neighbourhood (first, interior, last) run as
// one flat loop each, so narrow images pay no per-row loop overhead.
template <int P, typename scalar_t, typename opmath_t>
FL_CPU_MULTIVERSION void rows_grad(const scalar_t* x, int64_t h0, int64_t h1, int64_t H, int64_t W, opmath_t sh,
                                   opmath_t sv, opmath_t* pairs, scalar_t* grad) {
  const int64_t block_rows = std::max<int64_t>(1, kGradBlockElems / W);
  opmath_t* right = pairs + 1;  // right[j]: pair (j, j+1) of the block's flat range
  pairs[0] = 0;
  for (int64_t b0 = h0; b0 < h1; b0 += block_rows) {
    const int64_t b1 = std::min(h1, b0 + block_rows);
    const int64_t offset = b0 * W, n = (b1 - b0) * W;
    const scalar_t* base = x + offset;
#pragma omp simd
    for (int64_t j = 0; j < n - 1; ++j) right[j] = tv::penalty_grad<P>(opmath_t(base[j + 1]) - opmath_t(base[j]));
    for (int64_t r = 0; r < b1 - b0; ++r) right[r * W + W - 1] = 0;
    // Rows [r0, r1) whose upper and lower neighbours sit at offsets -up and +down (0: none).
    auto span = [&](int64_t r0, int64_t r1, int64_t up, int64_t down) {
#pragma omp simd
      for (int64_t i = r0 * W; i < r1 * W; ++i) {
        const int64_t j = i - offset;
        grad[i] = static_cast<scalar_t>(tv::pixel_grad_from_pairs<P>(
            sh, sv, pairs[j], right[j], opmath_t(x[i]), opmath_t(x[i - up]), opmath_t(x[i + down])));
      }
    };
    if (H == 1) {
      span(b0, b1, 0, 0);
      continue;
    }
    if (b0 == 0) span(0, 1, 0, W);
    span(std::max<int64_t>(b0, 1), std::min<int64_t>(b1, H - 1), W, W);
    if (b1 == H) span(H - 1, H, W, 0);
  }
}

template <int P, typename scalar_t>
void backward_impl(const at::opmath_type<scalar_t>* grad_out, const scalar_t* x, const Geometry& g, scalar_t* grad) {
  using opmath_t = at::opmath_type<scalar_t>;
  const double wh = tv::mean_weight<double>(g.C * g.H * (g.W - 1));
  const double wv = tv::mean_weight<double>(g.C * (g.H - 1) * g.W);
  at::parallel_for(0, g.items(), 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> pairs(std::max(kGradBlockElems, g.W) + 1);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / g.items_per_plane;
      const double go = static_cast<double>(grad_out[plane / g.C]);
      const int64_t h0 = (item % g.items_per_plane) * g.rows_per_item;
      const int64_t h1 = std::min(g.H, h0 + g.rows_per_item);
      const int64_t offset = plane * g.H * g.W;
      rows_grad<P>(x + offset, h0, h1, g.H, g.W, static_cast<opmath_t>(go * wh), static_cast<opmath_t>(go * wv),
                pairs.data(), grad + offset);
    }
  });
}

at::Tensor total_variation_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& x_in, int64_t p) {
  constexpr const char* op = "fastleak::total_variation_backward";
  tv::check_backward_input(grad_out_in, x_in, p, op);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const Geometry g(x);
  at::Tensor grad = at::empty(x.sizes(), x.options());
  if (g.items() == 0) return grad.zero_();
  tv::dispatch_exponent(p, [&](auto exponent) {
    constexpr int P = decltype(exponent)::value;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), op, [&] {
      backward_impl<P>(grad_out.const_data_ptr<at::opmath_type<scalar_t>>(), x.const_data_ptr<scalar_t>(), g,
                       grad.mutable_data_ptr<scalar_t>());
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CPU, m) {
  m.impl("total_variation", &total_variation_cpu);
  m.impl("total_variation_backward", &total_variation_backward_cpu);
}

}  // namespace fastleak
