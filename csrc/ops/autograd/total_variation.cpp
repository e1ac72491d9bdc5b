// Autograd of the total-variation ops, registered for every device. The gradient is one
// total_variation_backward pass, and that pass is differentiable in turn, to any order: its own
// derivatives are again total_variation_backward passes (see TotalVariationBackwardFunction).
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
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t p) {
    ctx->save_for_backward({x});
    ctx->saved_data["p"] = p;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return total_variation(x, p);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const int64_t p = ctx->saved_data["p"].toInt();
    return {detail::total_variation_backward(grads[0], ctx->get_saved_variables()[0], p), at::Tensor()};
  }
};

// backward(g, x)[n] = g[n] * G(x[n]), with G the gradient of one image's TV. It is linear in g, so
// d/dg[n] of <gg, backward(g, x)> is <gg[n], G(x[n])> = sum(gg * backward(1, x))[n]. In x, G is
// piecewise constant for p = 1 (its derivative is 0, as for the reference's |d|), and linear and
// symmetric for p = 2 (G(x) = L x, L a weighted graph Laplacian), so d/dx = g * L gg = backward(g, gg).
class TotalVariationBackwardFunction : public torch::autograd::Function<TotalVariationBackwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_out, const at::Tensor& x, int64_t p) {
    ctx->save_for_backward({grad_out, x});
    ctx->saved_data["p"] = p;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return detail::total_variation_backward(grad_out, x, p);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& grad_out = saved[0];
    const at::Tensor& x = saved[1];
    const int64_t p = ctx->saved_data["p"].toInt();
    const at::Tensor& gg = grads[0];
    at::Tensor grad_grad_out;
    at::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      grad_grad_out = (gg * detail::total_variation_backward(at::ones_like(grad_out), x, p)).sum({1, 2, 3});
    }
    if (ctx->needs_input_grad(1)) {
      grad_x = p == 1 ? at::zeros_like(x) : detail::total_variation_backward(grad_out, gg, p);
    }
    return {grad_grad_out, grad_x, at::Tensor()};
  }
};

at::Tensor total_variation_autograd(const at::Tensor& x, int64_t p) { return TotalVariationFunction::apply(x, p); }

at::Tensor total_variation_backward_autograd(const at::Tensor& grad_out, const at::Tensor& x, int64_t p) {
  return TotalVariationBackwardFunction::apply(grad_out, x, p);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, Autograd, m) {
  m.impl("total_variation", &total_variation_autograd);
  m.impl("total_variation_backward", &total_variation_backward_autograd);
}

}  // namespace fastleak
