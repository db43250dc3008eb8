// The convolution ops, backend-neutral: check, pick the route and memory format,
// allocate, and hand contiguous NCHW tensors to the backend's kernels.
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "kernels.h"

namespace classic_ops {
namespace {

const ConvKernels& conv_kernels(ConvRoute route, const ConvGeometry& g, const at::Tensor& input) {
  return kernels_for(input).conv(route, g, input.scalar_type(), input.suggest_memory_format());
}

// The weight as a kernel reads it: as it is where the kernel takes `either_layout` and it
// is contiguous in one, else contiguous in the kernels' weight_layout.
at::Tensor weight_as_read(const ConvKernels& kernels, bool either_layout, const at::Tensor& weight) {
  if (either_layout && (weight.is_contiguous() || weight.is_contiguous(at::MemoryFormat::ChannelsLast))) {
    return weight;
  }
  return kernels_for(weight).contiguous_weight(weight, kernels.weight_layout);
}

at::Tensor run_forward(ConvRoute route, const ConvGeometry& g, const at::Tensor& input,
                       const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       bool relu) {
  c10::DeviceGuard guard(input.device());
  const ConvKernels& kernels = conv_kernels(route, g, input);
  at::Tensor output = kernels_for(input).empty({g.batch, g.out_channels, g.out_h, g.out_w},
                                                input.options(), kernels.forward_layout);
  if (output.numel() > 0) {
    const at::Tensor bias_contiguous =
        bias.has_value() && bias->defined() ? bias->contiguous() : at::Tensor();
    const at::Tensor x = input.contiguous(kernels.forward_layout);
    const at::Tensor w = weight_as_read(kernels, kernels.forward_weight_in_either_layout, weight);
    if (relu && kernels.forward_relu != nullptr) {
      kernels.forward_relu(x, w, bias_contiguous, output, g);
    } else {
      kernels.forward(x, w, bias_contiguous, output, g);
      if (relu) output.clamp_min_(0);  // NaN stays NaN, as in torch.relu
    }
  }
  return output.contiguous(conv2d_output_format(input, weight));
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool relu) {
  const ConvGeometry g =
      check_conv2d("classic_ops.conv2d", input, weight, bias, stride, padding, dilation, groups);
  return run_forward(route_conv2d(g), g, input, weight, bias, relu);
}

at::Tensor depthwise_conv2d(const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation, bool relu) {
  constexpr const char* op = "classic_ops.depthwise_conv2d";
  const int64_t channels = input.dim() == 4 ? std::max<int64_t>(input.size(1), 1) : 1;
  const ConvGeometry g =
      check_conv2d(op, input, weight, bias, stride, padding, dilation, channels);
  check_depthwise_weight(op, g);
  return run_forward(ConvRoute::Depthwise, g, input, weight, bias, relu);
}

at::Tensor pointwise_conv2d(const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                            bool relu) {
  constexpr const char* op = "classic_ops.pointwise_conv2d";
  const int64_t no_padding[2] = {0, 0};
  const int64_t no_dilation[2] = {1, 1};
  const ConvGeometry g =
      check_conv2d(op, input, weight, bias, stride, no_padding, no_dilation, /*groups=*/1);
  check_pointwise_weight(op, g);
  return run_forward(ConvRoute::Pointwise, g, input, weight, bias, relu);
}

at::Tensor conv2d_grad_input(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& weight, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const ConvGeometry g = check_conv2d_backward("classic_ops.conv2d_grad_input", grad_output, input,
                                               weight, stride, padding, dilation, groups);
  c10::DeviceGuard guard(input.device());
  const ConvKernels& kernels = conv_kernels(route_conv2d(g), g, input);
  at::Tensor grad_input = kernels_for(input).empty(input.sizes(), input.options(), kernels.backward_layout);
  if (grad_input.numel() > 0) {
    kernels.grad_input(grad_output.contiguous(kernels.backward_layout),
                       weight_as_read(kernels, kernels.grad_input_weight_in_either_layout, weight), grad_input, g);
  }
  return grad_input.contiguous(conv2d_output_format(input, weight));
}

at::Tensor conv2d_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                              const at::Tensor& weight, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const ConvGeometry g = check_conv2d_backward("classic_ops.conv2d_grad_weight", grad_output,
                                               input, weight, stride, padding, dilation, groups);
  c10::DeviceGuard guard(input.device());
  const at::MemoryFormat format = conv2d_output_format(input, weight);
  if (g.batch == 0) return at::empty(weight.sizes(), weight.options(), format).zero_();
  const ConvKernels& kernels = conv_kernels(route_conv2d(g), g, input);
  // A channels_last grad_weight converted from NCHW afterwards: ATen's transposing copy of a
  // 512x512x3x3 weight took as long as computing it, 7x7 planes' backward on one thread.
  const at::MemoryFormat layout = kernels.grad_weight_in_either_layout ? format : kernels.weight_layout;
  at::Tensor grad_weight = kernels_for(input).empty(weight.sizes(), weight.options(), layout);
  kernels.grad_weight(grad_output.contiguous(kernels.backward_layout),
                      input.contiguous(kernels.backward_layout), grad_weight, g);
  return grad_weight.contiguous(format);
}

void register_conv_ops(torch::Library& m) {
  m.impl("conv2d", &conv2d);
  m.impl("depthwise_conv2d", &depthwise_conv2d);
  m.impl("pointwise_conv2d", &pointwise_conv2d);
  m.impl("conv2d_grad_input", &conv2d_grad_input);
  m.impl("conv2d_grad_weight", &conv2d_grad_weight);
}

}  // namespace

TORCH_LIBRARY_IMPL(classic_ops, CPU, m) { register_conv_ops(m); }
#ifdef CLASSIC_OPS_WITH_CUDA
TORCH_LIBRARY_IMPL(classic_ops, CUDA, m) { register_conv_ops(m); }
#endif

}  // namespace classic_ops
