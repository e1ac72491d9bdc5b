// Schema and autograd of the total-variation ops; kernels live in cpu/ and cuda/total_variation.*.
// The autograd is registered here, in C++, for every device: a Python autograd layer would cost
// more per call than the GPU kernels themselves take.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(fastleak, m) {
  // Per-image mean |horizontal diff|^p + mean |vertical diff|^p of x [N, C, H, W], p in {1, 2}.
  m.def("total_variation(Tensor x, int p) -> Tensor");
  // Gradient of total_variation w.r.t. x, given grad_out [N].
  m.def("total_variation_backward(Tensor grad_out, Tensor x, int p) -> Tensor");
}

namespace fastleak {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_total_variation(const at::Tensor& x, int64_t p) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::total_variation", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t)>();
  return op.call(x, p);
}

at::Tensor call_total_variation_backward(const at::Tensor& grad_out, const at::Tensor& x, int64_t p) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastleak::total_variation_backward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>();
  return op.call(grad_out, x, p);
}

class TotalVariation : public torch::autograd::Function<TotalVariation> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t p) {
    ctx->save_for_backward({x});
    ctx->saved_data["p"] = p;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_total_variation(x, p);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    // Through the dispatcher, so that the backward is itself differentiable.
    return {call_total_variation_backward(grads[0], x, ctx->saved_data["p"].toInt()), at::Tensor()};
  }
};

class TotalVariationBackward : public torch::autograd::Function<TotalVariationBackward> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_out, const at::Tensor& x, int64_t p) {
    ctx->save_for_backward({grad_out, x});
    ctx->saved_data["p"] = p;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_total_variation_backward(grad_out, x, p);
  }

  // backward(g, x) = g[n] * J_n(x) with J_n = d tv[n] / d x[n], so it is linear in g.
  // For p=2, J_n(x) = L x with a symmetric stencil L, hence d<gg, g L x>/dx = g L gg;
  // for p=1, J_n is piecewise constant in x and its derivative is 0 almost everywhere.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad_out = saved[0];
    const at::Tensor& x = saved[1];
    const int64_t p = ctx->saved_data["p"].toInt();
    const at::Tensor& grad_grad_x = grads[0];
    at::Tensor grad_grad_out, grad_x;
    if (ctx->needs_input_grad(0)) {
      const at::Tensor jac = call_total_variation_backward(at::ones_like(grad_out), x, p);
      grad_grad_out = (grad_grad_x.to(grad_out.scalar_type()) * jac.to(grad_out.scalar_type())).flatten(1).sum(1);
    }
    if (ctx->needs_input_grad(1)) {
      grad_x = p == 2 ? call_total_variation_backward(grad_out, grad_grad_x.to(x.scalar_type()), p)
                      : at::zeros_like(x);
    }
    return {grad_grad_out, grad_x, at::Tensor()};
  }
};

at::Tensor total_variation_autograd(const at::Tensor& x, int64_t p) {
  return TotalVariation::apply(x, p);
}

at::Tensor total_variation_backward_autograd(const at::Tensor& grad_out, const at::Tensor& x, int64_t p) {
  return TotalVariationBackward::apply(grad_out, x, p);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, Autograd, m) {
  m.impl("total_variation", &total_variation_autograd);
  m.impl("total_variation_backward", &total_variation_backward_autograd);
}

}  // namespace fastleak
