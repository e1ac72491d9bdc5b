#pragma once
// The dtypes every fastleak kernel accepts, checked on the host before dispatching on them.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace fastleak {

inline void check_dtype(const char* op, const char* name, const at::Tensor& x) {
  const at::ScalarType dtype = x.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble, op, ": ", name,
                   " must be float32 or float64, got dtype ", dtype);
}

}  // namespace fastleak
