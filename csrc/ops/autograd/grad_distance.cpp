// Autograd of the gradient-distance ops, registered for every device. The gradient of the
// partial sums is one fused grad_distance_backward pass per side; that pass is not differentiable.
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

class GradDistanceBackwardFunction : public torch::autograd::Function<GradDistanceBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, at::TensorList rec, at::TensorList target,
                               const at::Tensor& coef_rec, const at::Tensor& coef_target, bool batched,
                               bool row_targets) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return detail::grad_distance_backward(rec, target, coef_rec, coef_target, batched, row_targets);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(false, "fastleak::grad_distance_backward is not differentiable: the compiled grad_distance "
                "has first derivatives only (use fastleak.ops.grad_distance_reference for higher orders)");
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
