// Autograd of the total-variation ops, registered for every device. The gradient is one
// total_variation_backward pass; that pass is not differentiable.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "../total_variation.h"

namespace fastleak {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class TotalVariationFunction : public torch::autograd::Function<TotalVariationFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return total_variation(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {detail::total_variation_backward(grads[0], ctx->get_saved_variables()[0])};
  }
};

class TotalVariationBackwardFunction : public torch::autograd::Function<TotalVariationBackwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_out, const at::Tensor& x) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return detail::total_variation_backward(grad_out, x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(false, "fastleak::total_variation_backward is not differentiable: the compiled total_variation "
                "has first derivatives only (use fastleak.ops.total_variation_reference for higher orders)");
  }
};

at::Tensor total_variation_autograd(const at::Tensor& x) { return TotalVariationFunction::apply(x); }

at::Tensor total_variation_backward_autograd(const at::Tensor& grad_out, const at::Tensor& x) {
  return TotalVariationBackwardFunction::apply(grad_out, x);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, Autograd, m) {
  m.impl("total_variation", &total_variation_autograd);
  m.impl("total_variation_backward", &total_variation_backward_autograd);
}

}  // namespace fastleak
