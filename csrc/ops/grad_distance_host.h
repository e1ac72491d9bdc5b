#pragma once
// Host-side argument checks and sizes of the grad_distance ops, shared by the CPU and CUDA implementations.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/accumulate.h>

#include <utility>
#include <vector>

#include "dtype.h"

namespace fastleak {
namespace grad_distance {

inline int64_t check_inputs(const char* op, at::TensorList rec, at::TensorList target, bool batched,
                            bool row_targets) {
  TORCH_CHECK_VALUE(rec.size() == target.size(), op, ": rec and target must have the same length, got ",
                    rec.size(), " and ", target.size());
  TORCH_CHECK_VALUE(!rec.empty(), op, ": rec and target must be non-empty lists of tensors, got empty lists");
  TORCH_CHECK_VALUE(batched || !row_targets, op, ": row_targets=True needs batched=True");
  const at::Tensor& ref = rec[0];
  check_dtype(op, "rec[0]", ref);
  const auto dtype = ref.scalar_type();
  int64_t restarts = 1;
  if (batched) {
    TORCH_CHECK_VALUE(ref.dim() >= 1, op,
                      ": with batched=True, rec[0] must have a leading restart dimension, got a 0-dim tensor");
    restarts = ref.size(0);
  }
  for (size_t i = 0; i < rec.size(); ++i) {
    for (const auto& [name, x] : {std::pair<const char*, const at::Tensor&>{"rec", rec[i]}, {"target", target[i]}}) {
      TORCH_CHECK_TYPE(x.scalar_type() == dtype, op, ": ", name, "[", i, "] has dtype ", x.scalar_type(),
                       ", expected ", dtype, " (the dtype of rec[0]); all tensors must share one dtype");
      TORCH_CHECK_VALUE(x.device() == ref.device(), op, ": ", name, "[", i, "] is on ", x.device(), ", expected ",
                        ref.device(), " (the device of rec[0]); all tensors must be on one device");
    }
    const at::IntArrayRef rs = rec[i].sizes();
    const at::IntArrayRef ts = target[i].sizes();
    const bool shared = batched && !row_targets;
    const bool same = shared ? rs.size() == ts.size() + 1 && rs[0] == restarts && rs.slice(1).equals(ts)
                             : rs == ts && (!batched || (!rs.empty() && rs[0] == restarts));
    if (!same) {
      std::vector<int64_t> expected(ts.begin(), ts.end());
      if (shared) expected.insert(expected.begin(), restarts);
      const char* what = shared ? " ([R, *target[i].shape])" : " (target[i].shape)";
      if (row_targets && rs == ts) {
        TORCH_CHECK_VALUE(false, op, ": with row_targets=True every rec[i] and target[i] must have the leading ",
                          "dimension R = ", restarts, "; index ", i, " has shape ", rs);
      }
      TORCH_CHECK_VALUE(false, op, ": shape mismatch at index ", i, ": rec[", i, "] has shape ", rs, ", expected ",
                        at::IntArrayRef(expected), what);
    }
  }
  return restarts;
}

inline void check_coef(const char* op, const char* name, const at::Tensor& coef, const at::Tensor& ref,
                       int64_t restarts, int64_t n) {
  const auto opmath = at::toOpMathType(ref.scalar_type());
  TORCH_CHECK_TYPE(coef.scalar_type() == opmath, op, ": ", name, " has dtype ", coef.scalar_type(), ", expected ",
                   opmath, " (the dtype of rec[0])");
  TORCH_CHECK_VALUE(coef.device() == ref.device(), op, ": ", name, " is on ", coef.device(), ", expected ",
                    ref.device(), " (the device of rec[0])");
  TORCH_CHECK_VALUE(coef.dim() == 2 && coef.size(0) == restarts && coef.size(1) == n, op, ": ", name,
                    " must have shape [R, N] = [", restarts, ", ", n, "], got ", coef.sizes());
}

// Elements of target per restart: all of a shared target, one row of per-row targets.
inline int64_t numel_per_restart(const at::Tensor& target, bool row_targets) {
  return row_targets ? c10::multiply_integers(target.sizes().slice(1)) : target.numel();
}

}  // namespace grad_distance
}  // namespace fastleak
