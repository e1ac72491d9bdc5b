// CPU kernels of fastleak::grad_distance_partials and fastleak::grad_distance_backward.
//
// Every (tensor, restart) is cut into chunks of kChunk elements. The work items, ordered by
// (tensor, restart, chunk), are spread over the threads by element count; each item's sums go to
// its own slot, and the slots are added in item order. Results therefore do not depend on the
// thread count and are bitwise identical from run to run.

// Keep a * b + c as two roundings: the portable and the vectorised variants of chunk_sums_impl
// (with and without FMA units) then give bitwise the same sums.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../grad_distance_host.h"
#include "../grad_distance_math.h"

namespace fastleak {

namespace {

using namespace grad_distance;

constexpr int64_t kChunk = int64_t{1} << 16;
constexpr int kLanes = 8;  // independent accumulators per slot, added in fixed order

struct WorkItem {
  int64_t tensor;
  int64_t restart;
  int64_t begin;  // element offset inside the restart's slice
  int64_t len;
};

struct Plan {
  std::vector<WorkItem> items;  // ordered by (tensor, restart, chunk); empty tensors have none
  std::vector<int64_t> starts;  // starts[k]: elements before item k; starts.back(): all elements
};

Plan make_plan(const std::vector<int64_t>& numel, int64_t restarts) {
  Plan plan;
  int64_t offset = 0;
  for (size_t i = 0; i < numel.size(); ++i) {
    for (int64_t r = 0; r < restarts; ++r) {
      for (int64_t b = 0; b < numel[i]; b += kChunk) {
        const int64_t len = std::min(kChunk, numel[i] - b);
        plan.items.push_back({static_cast<int64_t>(i), r, b, len});
        plan.starts.push_back(offset);
        offset += len;
      }
    }
  }
  plan.starts.push_back(offset);
  return plan;
}

// Runs f(k) for every item k, splitting the items between threads by element count.
template <typename F>
void for_each_item(const Plan& plan, const F& f) {
  const int64_t n_items = static_cast<int64_t>(plan.items.size());
  at::parallel_for(0, plan.starts.back(), kChunk, [&](int64_t begin, int64_t end) {
    int64_t k = std::lower_bound(plan.starts.begin(), plan.starts.end() - 1, begin) - plan.starts.begin();
    for (; k < n_items && plan.starts[k] < end; ++k) f(k);
  });
}

// Sums of one chunk in kLanes interleaved accumulators per slot, added in lane order at the end.
// The same operations run in the same order on every instruction set, so the vectorised
// variants below give bitwise the results of the portable one.
template <typename scalar_t>
__attribute__((always_inline)) inline void chunk_sums_impl(const scalar_t* __restrict__ r,
                                                           const scalar_t* __restrict__ t, int64_t n, double* out) {
  double diff2[kLanes] = {}, dot[kLanes] = {}, rec_sq[kLanes] = {}, tgt_sq[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      accumulate<double>(static_cast<double>(r[k + l]), static_cast<double>(t[k + l]), diff2[l], dot[l], rec_sq[l],
                         tgt_sq[l]);
    }
  }
  for (int l = 0; k < n; ++k, ++l) {
    accumulate<double>(static_cast<double>(r[k]), static_cast<double>(t[k]), diff2[l], dot[l], rec_sq[l], tgt_sq[l]);
  }
  const double* lanes[kSlots] = {};
  lanes[kDiff2] = diff2;
  lanes[kDot] = dot;
  lanes[kRecSq] = rec_sq;
  lanes[kTgtSq] = tgt_sq;
  for (int s = 0; s < kSlots; ++s) {
    double v = 0.0;
    for (int l = 0; l < kLanes; ++l) v += lanes[s][l];
    out[s] = v;
  }
}

template <typename scalar_t>
using ChunkSumsFn = void (*)(const scalar_t*, const scalar_t*, int64_t, double*);

template <typename scalar_t>
void chunk_sums_portable(const scalar_t* r, const scalar_t* t, int64_t n, double* out) {
  chunk_sums_impl<scalar_t>(r, t, n, out);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTLEAK_X86_VARIANTS 1

template <typename scalar_t>
__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw"))) void chunk_sums_avx512(
    const scalar_t* r, const scalar_t* t, int64_t n, double* out) {
  chunk_sums_impl<scalar_t>(r, t, n, out);
}

template <typename scalar_t>
__attribute__((target("avx2"))) void chunk_sums_avx2(const scalar_t* r, const scalar_t* t, int64_t n, double* out) {
  chunk_sums_impl<scalar_t>(r, t, n, out);
}
#endif

// The widest variant this processor runs.
template <typename scalar_t>
ChunkSumsFn<scalar_t> select_chunk_sums() {
#ifdef FASTLEAK_X86_VARIANTS
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx512) return &chunk_sums_avx512<scalar_t>;
  if (avx2) return &chunk_sums_avx2<scalar_t>;
#endif
  return &chunk_sums_portable<scalar_t>;
}

template <typename scalar_t, typename opmath_t>
void chunk_backward(const scalar_t* __restrict__ r, const scalar_t* __restrict__ t, scalar_t* __restrict__ out,
                    int64_t n, opmath_t coef_rec, opmath_t coef_target) {
  for (int64_t k = 0; k < n; ++k) {
    out[k] = static_cast<scalar_t>(
        backward_value<opmath_t>(coef_rec, static_cast<opmath_t>(r[k]), coef_target, static_cast<opmath_t>(t[k])));
  }
}

std::vector<at::Tensor> contiguous_all(at::TensorList xs) {
  std::vector<at::Tensor> out;
  out.reserve(xs.size());
  for (const auto& x : xs) out.push_back(x.contiguous());
  return out;
}

// numel_per_restart of every tensor.
std::vector<int64_t> numels_per_restart(at::TensorList target, bool row_targets) {
  std::vector<int64_t> numel;
  numel.reserve(target.size());
  for (const auto& t : target) numel.push_back(numel_per_restart(t, row_targets));
  return numel;
}

at::Tensor partials_cpu(at::TensorList rec_in, at::TensorList target_in, bool batched, bool row_targets) {
  constexpr const char* op = "grad_distance_partials";
  const int64_t restarts = check_inputs(op, rec_in, target_in, batched, row_targets);
  const int64_t n = static_cast<int64_t>(rec_in.size());
  const auto rec = contiguous_all(rec_in);
  const auto target = contiguous_all(target_in);
  const auto numel = numels_per_restart(target_in, row_targets);
  const Plan plan = make_plan(numel, restarts);
  const int64_t n_items = static_cast<int64_t>(plan.items.size());

  std::vector<double> item_sums(static_cast<size_t>(n_items) * kSlots);
  AT_DISPATCH_FLOATING_TYPES(rec[0].scalar_type(), "grad_distance_partials_cpu", [&] {
    const ChunkSumsFn<scalar_t> chunk_sums = select_chunk_sums<scalar_t>();
    for_each_item(plan, [&](int64_t k) {
      const WorkItem& item = plan.items[k];
      const int64_t row = item.restart * numel[item.tensor];
      const scalar_t* r = rec[item.tensor].const_data_ptr<scalar_t>() + row + item.begin;
      const scalar_t* t = target[item.tensor].const_data_ptr<scalar_t>() + (row_targets ? row : 0) + item.begin;
      chunk_sums(r, t, item.len, &item_sums[static_cast<size_t>(k) * kSlots]);
    });
  });

  at::Tensor sums = at::zeros({restarts, n, kSlots}, rec[0].options().dtype(at::kDouble));
  double* out = sums.data_ptr<double>();
  for (int64_t k = 0; k < n_items; ++k) {
    const WorkItem& item = plan.items[k];
    double* row = out + (item.restart * n + item.tensor) * kSlots;
    for (int s = 0; s < kSlots; ++s) row[s] += item_sums[static_cast<size_t>(k) * kSlots + s];
  }
  return sums.to(at::toOpMathType(rec[0].scalar_type()));
}

std::vector<at::Tensor> backward_cpu(at::TensorList rec_in, at::TensorList target_in, const at::Tensor& coef_rec_in,
                                     const at::Tensor& coef_target_in, bool batched, bool row_targets) {
  constexpr const char* op = "grad_distance_backward";
  const int64_t restarts = check_inputs(op, rec_in, target_in, batched, row_targets);
  const int64_t n = static_cast<int64_t>(rec_in.size());
  check_coef(op, "coef_rec", coef_rec_in, rec_in[0], restarts, n);
  check_coef(op, "coef_target", coef_target_in, rec_in[0], restarts, n);
  const auto rec = contiguous_all(rec_in);
  const auto target = contiguous_all(target_in);
  const auto numel = numels_per_restart(target_in, row_targets);
  const at::Tensor coef_rec = coef_rec_in.contiguous();
  const at::Tensor coef_target = coef_target_in.contiguous();
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (const auto& r : rec_in) out.push_back(at::empty(r.sizes(), r.options()));
  const Plan plan = make_plan(numel, restarts);

  AT_DISPATCH_FLOATING_TYPES(rec[0].scalar_type(), "grad_distance_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const opmath_t* cr = coef_rec.const_data_ptr<opmath_t>();
    const opmath_t* ct = coef_target.const_data_ptr<opmath_t>();
    for_each_item(plan, [&](int64_t k) {
      const WorkItem& item = plan.items[k];
      const int64_t offset = item.restart * numel[item.tensor] + item.begin;
      const int64_t c = item.restart * n + item.tensor;
      chunk_backward<scalar_t, opmath_t>(rec[item.tensor].const_data_ptr<scalar_t>() + offset,
                                         target[item.tensor].const_data_ptr<scalar_t>() +
                                             (row_targets ? offset : item.begin),
                                         out[item.tensor].data_ptr<scalar_t>() + offset, item.len, cr[c], ct[c]);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, CPU, m) {
  m.impl("grad_distance_partials", &partials_cpu);
  m.impl("grad_distance_backward", &backward_cpu);
}

}  // namespace fastleak
