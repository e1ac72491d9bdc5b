// CPU kernels of fastleak::total_variation and its backward.
// Work is split into (image, channel, block of rows) items of a size that does not depend
// on the thread count; per-item partial sums are combined in a fixed order, so results are
// bitwise reproducible for any number of threads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../total_variation_math.h"

namespace fastleak {
namespace {

constexpr int64_t kItemElems = int64_t(1) << 15;
constexpr int64_t kSegment = 2048;

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

void check_input(const at::Tensor& x, int64_t p, const char* op) {
  TORCH_CHECK(x.dim() == 4, op, ": x must be 4-D [N, C, H, W], got ", x.dim(), "-D shape ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, ": x must be a floating-point tensor, got dtype ",
              x.scalar_type());
  TORCH_CHECK(p == 1 || p == 2, op, ": p must be 1 or 2, got ", p);
}

at::ScalarType result_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// Sums of penalty(x[h, w+1] - x[h, w]) and penalty(x[h+1, w] - x[h, w]) over rows [h0, h1) of
// one plane. Columns are processed in segments; within a segment every column accumulates its
// own opmath_t sum over the rows (plain vector adds, no per-row horizontal reduction, which
// matters for narrow images), and the column sums are added up in double.
template <int P, typename scalar_t>
FL_CPU_MULTIVERSION void plane_rows_sums(const scalar_t* plane, int64_t h0, int64_t h1, int64_t H, int64_t W,
                                         double& sh, double& sv) {
  using opmath_t = at::opmath_type<scalar_t>;
  opmath_t col_h[kSegment], col_v[kSegment];
  for (int64_t s = 0; s < W; s += kSegment) {
    const int64_t len = std::min(kSegment, W - s);
    const int64_t len_h = std::min(len, W - 1 - s);  // horizontal pairs that start in the segment
    std::fill(col_h, col_h + len, opmath_t(0));
    std::fill(col_v, col_v + len, opmath_t(0));
    for (int64_t h = h0; h < h1; ++h) {
      const scalar_t* row = plane + h * W + s;
      const scalar_t* below = h + 1 < H ? row + W : row;  // the last row has no vertical pairs
#pragma omp simd
      for (int64_t w = 0; w < len_h; ++w) {
        col_h[w] += tv::penalty<P>(opmath_t(row[w + 1]) - opmath_t(row[w]));
      }
#pragma omp simd
      for (int64_t w = 0; w < len; ++w) {
        col_v[w] += tv::penalty<P>(opmath_t(below[w]) - opmath_t(row[w]));
      }
    }
    double a = 0, b = 0;
    for (int64_t w = 0; w < len; ++w) {
      a += col_h[w];
      b += col_v[w];
    }
    sh += a;
    sv += b;
  }
}

template <int P, typename scalar_t, typename out_t>
void forward_impl(const scalar_t* x, const Geometry& g, out_t* out) {
  const int64_t items = g.items();
  std::vector<double> partial(2 * items);
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / g.items_per_plane;
      const int64_t h0 = (item % g.items_per_plane) * g.rows_per_item;
      const int64_t h1 = std::min(g.H, h0 + g.rows_per_item);
      double sh = 0, sv = 0;
      plane_rows_sums<P>(x + plane * g.H * g.W, h0, h1, g.H, g.W, sh, sv);
      partial[2 * item] = sh;
      partial[2 * item + 1] = sv;
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
    out[n] = static_cast<out_t>(sh * wh + sv * wv);
  }
}

at::Tensor total_variation_cpu(const at::Tensor& x_in, int64_t p) {
  check_input(x_in, p, "fastleak::total_variation");
  const at::Tensor x = x_in.contiguous();
  const Geometry g(x);
  at::Tensor out = at::zeros({g.N}, x.options().dtype(result_type(x.scalar_type())));
  if (g.items() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastleak::total_variation", [&] {
    using out_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    if (p == 1) {
      forward_impl<1>(x.const_data_ptr<scalar_t>(), g, out.mutable_data_ptr<out_t>());
    } else {
      forward_impl<2>(x.const_data_ptr<scalar_t>(), g, out.mutable_data_ptr<out_t>());
    }
  });
  return out;
}

// Gradient of rows [h0, h1) of one plane: a gather over the four neighbours of every pixel,
// with a missing neighbour replaced by the pixel itself (see tv::pixel_grad). Rows with the
// same vertical neighbourhood run as one flat loop that treats every pixel as horizontally
// interior (no per-row loop overhead for narrow images); the first and last column are redone
// after it by two strided loops.
template <int P, typename scalar_t, typename opmath_t = at::opmath_type<scalar_t>>
FL_CPU_MULTIVERSION void plane_rows_grad(const scalar_t* x, int64_t h0, int64_t h1, int64_t H, int64_t W,
                                         opmath_t sh, opmath_t sv, scalar_t* grad) {
  const int64_t r = W > 1 ? 1 : 0;  // offset of the horizontal neighbour of an edge pixel
  // Rows [r0, r1), whose upper and lower neighbours sit at offsets -up and +down.
  auto span = [&](int64_t r0, int64_t r1, int64_t up, int64_t down) {
    if (r0 >= r1) return;
    auto px = [&](int64_t i, int64_t left, int64_t right) {
      grad[i] = static_cast<scalar_t>(tv::pixel_grad<P>(sh, sv, opmath_t(x[i]), opmath_t(x[left]),
                                                        opmath_t(x[right]), opmath_t(x[i - up]),
                                                        opmath_t(x[i + down])));
    };
#pragma omp simd
    for (int64_t i = r0 * W + 1; i < r1 * W - 1; ++i) px(i, i - 1, i + 1);
#pragma omp simd
    for (int64_t h = r0; h < r1; ++h) px(h * W, h * W, h * W + r);
#pragma omp simd
    for (int64_t h = r0; h < r1; ++h) px(h * W + W - 1, h * W + W - 1 - r, h * W + W - 1);
  };
  if (H == 1) {
    span(h0, h1, 0, 0);
    return;
  }
  if (h0 == 0) span(0, 1, 0, W);
  span(std::max<int64_t>(h0, 1), std::min<int64_t>(h1, H - 1), W, W);
  if (h1 == H) span(H - 1, H, W, 0);
}

template <int P, typename scalar_t, typename go_t>
void backward_impl(const go_t* grad_out, const scalar_t* x, const Geometry& g, scalar_t* grad) {
  using opmath_t = at::opmath_type<scalar_t>;
  const double wh = tv::mean_weight<double>(g.C * g.H * (g.W - 1));
  const double wv = tv::mean_weight<double>(g.C * (g.H - 1) * g.W);
  at::parallel_for(0, g.items(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / g.items_per_plane;
      const double go = static_cast<double>(grad_out[plane / g.C]);
      const int64_t h0 = (item % g.items_per_plane) * g.rows_per_item;
      const int64_t h1 = std::min(g.H, h0 + g.rows_per_item);
      const int64_t offset = plane * g.H * g.W;
      plane_rows_grad<P>(x + offset, h0, h1, g.H, g.W, static_cast<opmath_t>(go * wh),
                         static_cast<opmath_t>(go * wv), grad + offset);
    }
  });
}

at::Tensor total_variation_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& x_in, int64_t p) {
  constexpr const char* op = "fastleak::total_variation_backward";
  check_input(x_in, p, op);
  TORCH_CHECK(grad_out_in.dim() == 1 && grad_out_in.size(0) == x_in.size(0), op,
              ": grad_out must have shape [N] = [", x_in.size(0), "], got ", grad_out_in.sizes());
  TORCH_CHECK(at::isFloatingType(grad_out_in.scalar_type()), op,
              ": grad_out must be a floating-point tensor, got dtype ", grad_out_in.scalar_type());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_out = grad_out_in.to(result_type(x.scalar_type())).contiguous();
  const Geometry g(x);
  at::Tensor grad = at::empty(x.sizes(), x.options());
  if (g.items() == 0) return grad.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastleak::total_variation_backward",
                                  [&] {
    using go_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    if (p == 1) {
      backward_impl<1>(grad_out.const_data_ptr<go_t>(), x.const_data_ptr<scalar_t>(), g,
                       grad.mutable_data_ptr<scalar_t>());
    } else {
      backward_impl<2>(grad_out.const_data_ptr<go_t>(), x.const_data_ptr<scalar_t>(), g,
                       grad.mutable_data_ptr<scalar_t>());
    }
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CPU, m) {
  m.impl("total_variation", &total_variation_cpu);
  m.impl("total_variation_backward", &total_variation_backward_cpu);
}

}  // namespace fastleak
