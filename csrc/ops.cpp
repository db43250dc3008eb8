// The one place where the operator schemas of classic_ops are declared. Kernels for each
// backend are registered next to their implementations; fake (meta) kernels and autograd
// formulas are registered from Python (classic_ops/_registrations.py).
#include <torch/library.h>

TORCH_LIBRARY(classic_ops, m) {
  // Convolutions. conv2d is the general entry point and routes depthwise and 1x1 cases
  // to the specialized kernels; the backward ops route the same way, so they serve all
  // three forward ops. relu=True returns relu(convolution + bias), fused into the kernel's
  // epilogue where the backend has such a kernel.
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] dilation, int groups, bool relu=False) -> Tensor");
  m.def("depthwise_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
        "int[2] padding, int[2] dilation, bool relu=False) -> Tensor");
  m.def("pointwise_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
        "bool relu=False) -> Tensor");
  m.def("conv2d_grad_input(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, "
        "int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def("conv2d_grad_weight(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, "
        "int[2] padding, int[2] dilation, int groups) -> Tensor");

  // Max-pooling. The plain forward writes no indices; the _with_indices variant returns
  // int64 indices into each H*W input plane, exactly as torch.nn.functional.max_pool2d.
  m.def("max_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
        "int[2] dilation, bool ceil_mode) -> Tensor");
  m.def("max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride, "
        "int[2] padding, int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  m.def("max_pool2d_grad_input(Tensor grad_output, Tensor input, Tensor indices, "
        "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode) "
        "-> Tensor");
}
