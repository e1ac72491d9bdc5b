// Autograd of the imprint-recovery op, registered for every device.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "../imprint_recover.h"

namespace fastleak {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The gradient of a per-bin difference (row k minus row k+1) with respect to the rows: row k
// receives bin k's gradient minus bin k-1's.
at::Tensor undo_difference(const at::Tensor& grad, int64_t row_dim) {
  if (grad.size(row_dim) == 0) return grad;
  return grad - at::constant_pad_nd(grad.narrow(row_dim, 0, grad.size(row_dim) - 1),
                                    row_dim == grad.dim() - 1 ? std::vector<int64_t>{1, 0}
                                                              : std::vector<int64_t>{0, 0, 1, 0});
}

class ImprintRecoverFunction : public torch::autograd::Function<ImprintRecoverFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_weight, const at::Tensor& grad_bias,
                               bool cumulative) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [images, bias_diff] = imprint_recover(grad_weight, grad_bias, cumulative);
    ctx->save_for_backward({images, bias_diff});
    ctx->saved_data["cumulative"] = cumulative;
    ctx->set_materialize_grads(false);
    return {images, bias_diff};
  }

  // images = weight_diff / bias_diff where bias_diff != 0 (zeros elsewhere, with zero gradient):
  // d images / d weight_diff = 1 / bias_diff and d images / d bias_diff = -images / bias_diff.
  // The reciprocal is taken of a bias_diff whose zeros are replaced by ones, so that the double
  // backward through it stays finite at empty bins (a reciprocal of zero there would turn the
  // where's zero gradient into 0 * inf = NaN).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& images = saved[0];
    const at::Tensor& bias_diff = saved[1];
    const bool cumulative = ctx->saved_data["cumulative"].toBool();
    const at::Tensor occupied = bias_diff.ne(0);
    const at::Tensor safe = at::where(occupied, bias_diff, at::ones_like(bias_diff));
    const at::Tensor inverse = at::where(occupied, safe.reciprocal(), at::zeros_like(bias_diff));
    at::Tensor grad_weight;
    at::Tensor grad_bias;
    if (grads[0].defined()) {
      grad_weight = grads[0] * inverse.unsqueeze(-1);
      grad_bias = -(grads[0] * images).sum(-1) * inverse;
    }
    if (grads[1].defined()) grad_bias = grad_bias.defined() ? grad_bias + grads[1] : grads[1];
    if (cumulative) {
      if (grad_weight.defined()) grad_weight = undo_difference(grad_weight, grad_weight.dim() - 2);
      if (grad_bias.defined()) grad_bias = undo_difference(grad_bias, grad_bias.dim() - 1);
    }
    return {grad_weight, grad_bias, at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> imprint_recover_autograd(const at::Tensor& grad_weight,
                                                            const at::Tensor& grad_bias, bool cumulative) {
  const variable_list out = ImprintRecoverFunction::apply(grad_weight, grad_bias, cumulative);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, Autograd, m) {
  m.impl("imprint_recover", &imprint_recover_autograd);
}

}  // namespace fastleak
