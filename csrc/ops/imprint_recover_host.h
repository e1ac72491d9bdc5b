#pragma once
// Host-side argument checks and outputs of imprint_recover, shared by the CPU and CUDA implementations.
#include <ATen/ATen.h>

#include <tuple>
#include <vector>

#include "dtype.h"
#include "imprint_recover_math.h"

namespace fastleak {
namespace imprint {

inline void check_inputs(const at::Tensor& grad_weight, const at::Tensor& grad_bias, const char* op) {
  TORCH_CHECK_VALUE(grad_weight.dim() >= 2, op, ": grad_weight must be at least 2-D [..., K, D], got ",
                    grad_weight.dim(), "-D shape ", grad_weight.sizes());
  check_dtype(op, "grad_weight", grad_weight);
  check_dtype(op, "grad_bias", grad_bias);
  TORCH_CHECK_TYPE(grad_bias.scalar_type() == grad_weight.scalar_type(), op, ": grad_bias has dtype ",
                   grad_bias.scalar_type(), ", expected ", grad_weight.scalar_type(), " (the dtype of grad_weight)");
  TORCH_CHECK_VALUE(grad_bias.device() == grad_weight.device(), op, ": grad_bias is on ", grad_bias.device(),
                    ", expected ", grad_weight.device(), " (the device of grad_weight)");
  const auto rows = grad_weight.sizes().slice(0, grad_weight.dim() - 1);
  TORCH_CHECK_VALUE(grad_bias.sizes() == rows, op, ": grad_bias must have shape [..., K] = ", rows,
                    " (grad_weight's shape without D), got ", grad_bias.sizes());
}

// The extra arguments of imprint_certify: measurement [M, D] (rows of bin group g = k / (K / M)),
// the grid's low and high ends and its number of steps (0: no grid).
inline void check_certify_args(const at::Tensor& grad_weight, const c10::optional<at::Tensor>& measurement,
                               double low, double high, int64_t levels, const char* op) {
  TORCH_CHECK_VALUE(levels >= 0, op, ": levels must be >= 0 (0: no pixel grid), got ", levels);
  TORCH_CHECK_VALUE(levels == 0 || high > low, op, ": high must be greater than low for a pixel grid, got low ", low,
                    " and high ", high);
  if (!measurement.has_value() || !measurement->defined()) return;
  const at::Tensor& m = *measurement;
  TORCH_CHECK_TYPE(m.scalar_type() == grad_weight.scalar_type(), op, ": measurement has dtype ", m.scalar_type(),
                   ", expected ", grad_weight.scalar_type(), " (the dtype of grad_weight)");
  TORCH_CHECK_VALUE(m.device() == grad_weight.device(), op, ": measurement is on ", m.device(), ", expected ",
                    grad_weight.device(), " (the device of grad_weight)");
  const int64_t K = grad_weight.size(-2);
  TORCH_CHECK_VALUE(m.dim() == 2 && m.size(1) == grad_weight.size(-1) && m.size(0) >= 1 && K % m.size(0) == 0, op,
                    ": measurement must have shape [M, D] with D = ", grad_weight.size(-1), " and M dividing K = ", K,
                    " (one measurement per group of K / M bins), got ", m.sizes());
}

// Uninitialised statistics [..., K, kNumStats] of imprint_certify, in grad_weight's dtype.
inline at::Tensor empty_stats(const at::Tensor& grad_bias) {
  std::vector<int64_t> shape(grad_bias.sizes().begin(), grad_bias.sizes().end());
  shape.push_back(kNumStats);
  return at::empty(shape, grad_bias.options());
}

// Uninitialised (images, bias_diff) outputs, shaped like (grad_weight, grad_bias).
inline std::tuple<at::Tensor, at::Tensor> empty_outputs(const at::Tensor& grad_weight, const at::Tensor& grad_bias) {
  return {at::empty(grad_weight.sizes(), grad_weight.options()), at::empty(grad_bias.sizes(), grad_bias.options())};
}

// imprint_certify's checked, contiguous inputs, its sizes and uninitialised outputs. Row r of the
// R = numel(grad_bias) bins uses measurement row (r % K) / per_group. Without a grid, low and scale
// are 0, which puts every finite value on it (distance 0).
struct CertifyProblem {
  at::Tensor grad_weight, grad_bias, measurement;  // measurement undefined without one
  int64_t K, D, R, per_group;
  double low, scale;
  at::Tensor images, bias_diff, stats;
};

inline CertifyProblem certify_problem(const at::Tensor& grad_weight, const at::Tensor& grad_bias,
                                      const c10::optional<at::Tensor>& measurement, double low, double high,
                                      int64_t levels, const char* op) {
  check_inputs(grad_weight, grad_bias, op);
  check_certify_args(grad_weight, measurement, low, high, levels, op);
  CertifyProblem p;
  p.grad_weight = grad_weight.contiguous();
  p.grad_bias = grad_bias.contiguous();
  if (measurement.has_value() && measurement->defined()) p.measurement = measurement->contiguous();
  p.K = p.grad_weight.size(-2);
  p.D = p.grad_weight.size(-1);
  p.R = p.grad_bias.numel();
  p.per_group = p.measurement.defined() ? p.K / p.measurement.size(0) : 1;
  p.low = levels > 0 ? low : 0.0;
  p.scale = levels > 0 ? double(levels) / (high - low) : 0.0;
  std::tie(p.images, p.bias_diff) = empty_outputs(p.grad_weight, p.grad_bias);
  p.stats = empty_stats(p.grad_bias);
  return p;
}

}  // namespace imprint
}  // namespace fastleak
