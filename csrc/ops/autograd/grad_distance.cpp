// Autograd of the gradient-distance ops, registered for every device. The gradient of the
// partial sums is one fused grad_distance_backward pass per side; that pass is differentiable in
// turn (through ATen ops, which are differentiable to any order), so the compiled op has the
// reference's derivatives of every order.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <vector>

#include "../grad_distance.h"
#include "../grad_distance_math.h"

namespace fastleak {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool any_needs_grad(const AutogradContext* ctx, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) {
    if (ctx->needs_input_grad(i)) return true;
  }
  return false;
}

class GradDistancePartialsFunction : public torch::autograd::Function<GradDistancePartialsFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, at::TensorList rec, at::TensorList target, bool batched,
                            bool row_targets) {
    variable_list saved(rec.begin(), rec.end());
    saved.insert(saved.end(), target.begin(), target.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["batched"] = batched;
    ctx->saved_data["row_targets"] = row_targets;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return grad_distance_partials(rec, target, batched, row_targets);
  }

  // Per (restart, tensor), d/dr of the slots [(r-t)^2, r*t, r^2, t^2] is [2(r-t), t, 2r, 0] and
  // d/dt is [-2(r-t), r, 0, 2t]: both gradients are coef_rec * r + coef_target * t.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const size_t n = saved.size() / 2;
    const at::TensorList rec(saved.data(), n);
    const at::TensorList target(saved.data() + n, n);
    const bool batched = ctx->saved_data["batched"].toBool();
    const bool row_targets = ctx->saved_data["row_targets"].toBool();
    const std::vector<at::Tensor> slot = grads[0].unbind(-1);
    const at::Tensor& grad_diff2 = slot[grad_distance::kDiff2];
    const at::Tensor cross = slot[grad_distance::kDot] - 2 * grad_diff2;
    variable_list out(2 * n + 2);  // rec..., target..., batched, row_targets
    if (any_needs_grad(ctx, 0, n)) {
      std::vector<at::Tensor> grad_rec = detail::grad_distance_backward(
          rec, target, 2 * (grad_diff2 + slot[grad_distance::kRecSq]), cross, batched, row_targets);
      std::move(grad_rec.begin(), grad_rec.end(), out.begin());
    }
    if (any_needs_grad(ctx, n, 2 * n)) {
      std::vector<at::Tensor> grad_target = detail::grad_distance_backward(
          rec, target, cross, 2 * (grad_diff2 + slot[grad_distance::kTgtSq]), batched, row_targets);
      const bool shared_target = batched && !row_targets;
      for (size_t i = 0; i < n; ++i) out[n + i] = shared_target ? grad_target[i].sum(0) : std::move(grad_target[i]);
    }
    return out;
  }
};

// The coefficient column i of a [R, N] coefficient tensor, shaped to broadcast against tensor i
// ([R, ...] when batched, a scalar otherwise).
at::Tensor coef_column(const at::Tensor& coef, size_t i, const at::Tensor& like, bool batched) {
  const at::Tensor column = coef.select(1, static_cast<int64_t>(i));
  if (!batched) return column.squeeze(0);
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = column.size(0);
  return column.view(shape);
}

// Per-row sums of t: [R] for a batched t [R, ...], [1] otherwise.
at::Tensor row_sums(const at::Tensor& t, bool batched) {
  if (!batched) return t.sum().reshape({1});
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < t.dim(); ++d) dims.push_back(d);
  return dims.empty() ? t : t.sum(dims);
}

// out[i] = coef_rec[:, i] * rec[i] + coef_target[:, i] * target[i] is bilinear: its derivatives
// are the other factor times the incoming gradient gg[i], reduced over a shared target's rows or
// over each tensor's elements for the coefficients.
class GradDistanceBackwardFunction : public torch::autograd::Function<GradDistanceBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, at::TensorList rec, at::TensorList target,
                               const at::Tensor& coef_rec, const at::Tensor& coef_target, bool batched,
                               bool row_targets) {
    variable_list saved(rec.begin(), rec.end());
    saved.insert(saved.end(), target.begin(), target.end());
    saved.push_back(coef_rec);
    saved.push_back(coef_target);
    ctx->save_for_backward(saved);
    ctx->saved_data["batched"] = batched;
    ctx->saved_data["row_targets"] = row_targets;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return detail::grad_distance_backward(rec, target, coef_rec, coef_target, batched, row_targets);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const size_t n = grads.size();
    const at::Tensor& coef_rec = saved[2 * n];
    const at::Tensor& coef_target = saved[2 * n + 1];
    const bool batched = ctx->saved_data["batched"].toBool();
    const bool shared_target = batched && !ctx->saved_data["row_targets"].toBool();
    const bool coef_rec_grad = ctx->needs_input_grad(2 * n);
    const bool coef_target_grad = ctx->needs_input_grad(2 * n + 1);
    variable_list out(2 * n + 4);  // rec..., target..., coef_rec, coef_target, batched, row_targets
    std::vector<at::Tensor> grad_coef_rec, grad_coef_target;
    for (size_t i = 0; i < n; ++i) {
      const at::Tensor& gg = grads[i];
      const at::Tensor& rec = saved[i];
      const at::Tensor& target = saved[n + i];
      if (ctx->needs_input_grad(i)) out[i] = gg * coef_column(coef_rec, i, rec, batched);
      if (ctx->needs_input_grad(n + i)) {
        const at::Tensor grad_target = gg * coef_column(coef_target, i, rec, batched);
        out[n + i] = shared_target ? grad_target.sum(0) : grad_target;
      }
      if (coef_rec_grad) grad_coef_rec.push_back(row_sums(gg * rec, batched));
      if (coef_target_grad) grad_coef_target.push_back(row_sums(gg * target, batched));
    }
    if (coef_rec_grad) out[2 * n] = at::stack(grad_coef_rec, 1);
    if (coef_target_grad) out[2 * n + 1] = at::stack(grad_coef_target, 1);
    return out;
  }
};

at::Tensor grad_distance_partials_autograd(at::TensorList rec, at::TensorList target, bool batched,
                                           bool row_targets) {
  return GradDistancePartialsFunction::apply(rec, target, batched, row_targets);
}

std::vector<at::Tensor> grad_distance_backward_autograd(at::TensorList rec, at::TensorList target,
                                                        const at::Tensor& coef_rec, const at::Tensor& coef_target,
                                                        bool batched, bool row_targets) {
  return GradDistanceBackwardFunction::apply(rec, target, coef_rec, coef_target, batched, row_targets);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, Autograd, m) {
  m.impl("grad_distance_partials", &grad_distance_partials_autograd);
  m.impl("grad_distance_backward", &grad_distance_backward_autograd);
}

}  // namespace fastleak
