// Autograd of the FC-gradient row statistics op, registered for every device.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>

#include "../fc_row_stats.h"

namespace fastleak {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class FCRowStatsFunction : public torch::autograd::Function<FCRowStatsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& g) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [sum, min] = fc_row_stats(g);
    ctx->save_for_backward({g, min});
    ctx->set_materialize_grads(false);
    return {sum, min};
  }

  // The sum spreads its gradient over the row; the minimum sends its gradient to the entries equal
  // to it, split evenly among ties (as torch.amin).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& g = saved[0];
    const at::Tensor& min = saved[1];
    at::Tensor grad;
    if (grads[0].defined()) grad = grads[0].unsqueeze(-1).expand_as(g);
    if (grads[1].defined()) {
      const at::Tensor hit = g.eq(min.unsqueeze(-1)).to(g.scalar_type());
      const at::Tensor grad_min = hit * (grads[1] / hit.sum(-1)).unsqueeze(-1);
      grad = grad.defined() ? grad + grad_min : grad_min;
    }
    return {grad};
  }
};

std::tuple<at::Tensor, at::Tensor> fc_row_stats_autograd(const at::Tensor& g) {
  const variable_list out = FCRowStatsFunction::apply(g);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastleak, Autograd, m) {
  m.impl("fc_row_stats", &fc_row_stats_autograd);
}

}  // namespace fastleak
