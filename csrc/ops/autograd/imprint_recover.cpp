// Autograd of the imprint-recovery and imprint-certification ops, registered for every device. Both
// share images and bias_diff and their derivatives; the certification's statistics are not
// differentiable.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "../imprint_certify.h"
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

// images = weight_diff / bias_diff where bias_diff != 0 (zeros elsewhere, with zero gradient):
// d images / d weight_diff = 1 / bias_diff and d images / d bias_diff = -images / bias_diff.
// The reciprocal is taken of a bias_diff whose zeros are replaced by ones, so that the double
// backward through it stays finite at empty bins (a reciprocal of zero there would turn the
// where's zero gradient into 0 * inf = NaN).
variable_list bins_backward(const at::Tensor& images, const at::Tensor& bias_diff, bool cumulative,
                            const at::Tensor& grad_images, const at::Tensor& grad_bias_diff) {
  const at::Tensor occupied = bias_diff.ne(0);
  const at::Tensor safe = at::where(occupied, bias_diff, at::ones_like(bias_diff));
  const at::Tensor inverse = at::where(occupied, safe.reciprocal(), at::zeros_like(bias_diff));
  at::Tensor grad_weight;
  at::Tensor grad_bias;
  if (grad_images.defined()) {
    grad_weight = grad_images * inverse.unsqueeze(-1);
    grad_bias = -(grad_images * images).sum(-1) * inverse;
  }
  if (grad_bias_diff.defined()) grad_bias = grad_bias.defined() ? grad_bias + grad_bias_diff : grad_bias_diff;
  if (cumulative) {
    if (grad_weight.defined()) grad_weight = undo_difference(grad_weight, grad_weight.dim() - 2);
    if (grad_bias.defined()) grad_bias = undo_difference(grad_bias, grad_bias.dim() - 1);
  }
  return {grad_weight, grad_bias};
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

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    variable_list out = bins_backward(saved[0], saved[1], ctx->saved_data["cumulative"].toBool(), grads[0], grads[1]);
    out.push_back(at::Tensor());
    return out;
  }
};

class ImprintCertifyFunction : public torch::autograd::Function<ImprintCertifyFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_weight, const at::Tensor& grad_bias,
                               bool cumulative, const c10::optional<at::Tensor>& measurement, double low,
                               double high, int64_t levels) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [images, bias_diff, stats] = imprint_certify(grad_weight, grad_bias, cumulative, measurement, low, high,
                                                      levels);
    ctx->save_for_backward({images, bias_diff});
    ctx->saved_data["cumulative"] = cumulative;
    ctx->mark_non_differentiable({stats});
    ctx->set_materialize_grads(false);
    return {images, bias_diff, stats};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    variable_list out = bins_backward(saved[0], saved[1], ctx->saved_data["cumulative"].toBool(), grads[0], grads[1]);
    for (int i = 0; i < 5; ++i) out.push_back(at::Tensor());
    return out;
  }
};

std::tuple<at::Tensor, at::Tensor> imprint_recover_autograd(const at::Tensor& grad_weight,
                                                            const at::Tensor& grad_bias, bool cumulative) {
  const variable_list out = ImprintRecoverFunction::apply(grad_weight, grad_bias, cumulative);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> imprint_certify_autograd(
    const at::Tensor& grad_weight, const at::Tensor& grad_bias, bool cumulative,
    const c10::optional<at::Tensor>& measurement, double low, double high, int64_t levels) {
  const variable_list out =
      ImprintCertifyFunction::apply(grad_weight, grad_bias, cumulative, measurement, low, high, levels);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, Autograd, m) {
  m.impl("imprint_recover", &imprint_recover_autograd);
  m.impl("imprint_certify", &imprint_certify_autograd);
}

}  // namespace fastleak
