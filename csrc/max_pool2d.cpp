// The max-pool ops, backend-neutral: check, keep the input's memory format (as PyTorch
// does), allocate, and hand the tensors to the backend's kernels.
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "kernels.h"

namespace classic_ops {
namespace {

std::tuple<at::Tensor, at::Tensor> run_forward(const char* op, const at::Tensor& input,
                                               at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                               at::IntArrayRef padding, at::IntArrayRef dilation,
                                               bool ceil_mode, bool with_indices) {
  const PoolGeometry g =
      check_max_pool2d(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  c10::DeviceGuard guard(input.device());
  const at::MemoryFormat format = input.suggest_memory_format();
  const std::vector<int64_t> out_sizes = {g.batch, g.channels, g.out_h, g.out_w};
  const BackendKernels& backend = kernels_for(input);
  at::Tensor output = backend.empty(out_sizes, input.options(), format);
  at::Tensor indices =
      with_indices ? backend.empty(out_sizes, input.options().dtype(at::kLong), format) : at::Tensor();
  if (output.numel() > 0) {
    backend.max_pool.forward(input.contiguous(format), output, indices, g);
  }
  return {output, indices};
}

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(run_forward("classic_ops.max_pool2d", input, kernel_size, stride, padding,
                                 dilation, ceil_mode, /*with_indices=*/false));
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(
    const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return run_forward("classic_ops.max_pool2d_with_indices", input, kernel_size, stride, padding,
                     dilation, ceil_mode, /*with_indices=*/true);
}

at::Tensor max_pool2d_grad_input(const at::Tensor& grad_output, const at::Tensor& input,
                                 const at::Tensor& indices, at::IntArrayRef kernel_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "classic_ops.max_pool2d_grad_input";
  const PoolGeometry g =
      check_max_pool2d(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  const std::vector<int64_t> out_sizes = {g.batch, g.channels, g.out_h, g.out_w};
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(out_sizes), op,
                    ": grad_output must have shape ", out_sizes, ", got ", grad_output.sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == input.scalar_type(), op, ": grad_output has dtype ",
                   grad_output.scalar_type(), " but input has dtype ", input.scalar_type());
  TORCH_CHECK_VALUE(indices.sizes() == at::IntArrayRef(out_sizes), op,
                    ": indices must have shape ", out_sizes, ", got ", indices.sizes());
  TORCH_CHECK_TYPE(indices.scalar_type() == at::kLong, op, ": indices must be int64, got ",
                   indices.scalar_type());
  TORCH_CHECK_VALUE(grad_output.device() == input.device() && indices.device() == input.device(),
                    op, ": grad_output and indices must be on the input's device ", input.device());
  c10::DeviceGuard guard(input.device());
  const at::MemoryFormat format = input.suggest_memory_format();
  const BackendKernels& backend = kernels_for(input);
  at::Tensor grad_input = backend.empty(input.sizes(), input.options(), format);
  if (grad_input.numel() > 0) {
    backend.max_pool.grad_input(grad_output.contiguous(format), indices.contiguous(format), grad_input, g);
  }
  return grad_input;
}

void register_max_pool_ops(torch::Library& m) {
  m.impl("max_pool2d", &max_pool2d);
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices);
  m.impl("max_pool2d_grad_input", &max_pool2d_grad_input);
}

}  // namespace

TORCH_LIBRARY_IMPL(classic_ops, CPU, m) { register_max_pool_ops(m); }
#ifdef CLASSIC_OPS_WITH_CUDA
TORCH_LIBRARY_IMPL(classic_ops, CUDA, m) { register_max_pool_ops(m); }
#endif

}  // namespace classic_ops
