#include "checks.h"

#include <c10/util/Exception.h>

namespace classic_ops {
namespace {

void check_pair(const char* op, const char* name, at::IntArrayRef values) {
  TORCH_CHECK_VALUE(values.size() == 2, op, ": ", name, " must have 2 elements (height, width), got ",
                    values.size());
}

void check_floating(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op, ": ", name,
                   " must be a floating-point tensor, got ", t.scalar_type());
}

void check_matches_input(const char* op, const char* name, const at::Tensor& t,
                         const at::Tensor& input) {
  TORCH_CHECK_TYPE(t.scalar_type() == input.scalar_type(), op, ": ", name, " has dtype ",
                   t.scalar_type(), " but input has dtype ", input.scalar_type());
  TORCH_CHECK_VALUE(t.device() == input.device(), op, ": ", name, " is on ", t.device(),
                    " but input is on ", input.device());
}

void check_4d(const char* op, const char* name, const at::Tensor& t, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == 4, op, ": ", name, " must be 4-D ", layout, ", got ", t.dim(),
                    "-D with shape ", t.sizes());
}

}  // namespace

ConvGeometry check_conv2d(const char* op, const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_floating(op, "input", input);
  check_4d(op, "input", input, "(N, C, H, W)");
  check_4d(op, "weight", weight, "(out_channels, in_channels / groups, kH, kW)");
  check_matches_input(op, "weight", weight, input);
  check_pair(op, "stride", stride);
  check_pair(op, "padding", padding);
  check_pair(op, "dilation", dilation);
  TORCH_CHECK_VALUE(stride[0] >= 1 && stride[1] >= 1, op, ": stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(dilation[0] >= 1 && dilation[1] >= 1, op, ": dilation must be >= 1, got ",
                    dilation);
  TORCH_CHECK_VALUE(padding[0] >= 0 && padding[1] >= 0, op, ": padding must be >= 0, got ",
                    padding);
  TORCH_CHECK_VALUE(groups >= 1, op, ": groups must be >= 1, got ", groups);
  TORCH_CHECK_VALUE(weight.numel() > 0, op, ": weight must not be empty, got shape ",
                    weight.sizes());

  ConvGeometry g{};
  g.batch = input.size(0);
  g.in_channels = input.size(1);
  g.in_h = input.size(2);
  g.in_w = input.size(3);
  g.out_channels = weight.size(0);
  g.kernel_h = weight.size(2);
  g.kernel_w = weight.size(3);
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_h = padding[0];
  g.pad_w = padding[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.groups = groups;

  TORCH_CHECK_VALUE(g.in_channels % groups == 0, op, ": groups (", groups,
                    ") must divide the input channels (", g.in_channels, ")");
  TORCH_CHECK_VALUE(g.out_channels % groups == 0, op, ": groups (", groups,
                    ") must divide the weight's output channels (", g.out_channels, ")");
  TORCH_CHECK_VALUE(weight.size(1) * groups == g.in_channels, op, ": weight expects ",
                    weight.size(1) * groups, " input channels (weight.size(1) * groups = ",
                    weight.size(1), " * ", groups, ") but input has ", g.in_channels,
                    " channels");
  TORCH_CHECK_VALUE(g.in_h > 0 && g.in_w > 0, op, ": input must have a non-empty spatial size, got ",
                    input.sizes());

  const int64_t extent_h = g.dilation_h * (g.kernel_h - 1) + 1;
  const int64_t extent_w = g.dilation_w * (g.kernel_w - 1) + 1;
  TORCH_CHECK_VALUE(extent_h <= g.in_h + 2 * g.pad_h && extent_w <= g.in_w + 2 * g.pad_w, op,
                    ": kernel size (", g.kernel_h, ", ", g.kernel_w, ") with dilation ", dilation,
                    " spans (", extent_h, ", ", extent_w, "), larger than the padded input (",
                    g.in_h + 2 * g.pad_h, ", ", g.in_w + 2 * g.pad_w, ")");
  g.out_h = (g.in_h + 2 * g.pad_h - extent_h) / g.stride_h + 1;
  g.out_w = (g.in_w + 2 * g.pad_w - extent_w) / g.stride_w + 1;
  // Along a one-tap kernel dimension dilation changes nothing; the kernels may then take it
  // as 1 (the strided planar kernel asks for unit dilation).
  if (g.kernel_h == 1) g.dilation_h = 1;
  if (g.kernel_w == 1) g.dilation_w = 1;

  if (bias.has_value() && bias->defined()) {
    check_matches_input(op, "bias", *bias, input);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == g.out_channels, op,
                      ": bias must have shape (", g.out_channels, "), got ", bias->sizes());
  }
  return g;
}

ConvGeometry check_conv2d_backward(const char* op, const at::Tensor& grad_output,
                                   const at::Tensor& input, const at::Tensor& weight,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int64_t groups) {
  const ConvGeometry g =
      check_conv2d(op, input, weight, std::nullopt, stride, padding, dilation, groups);
  check_matches_input(op, "grad_output", grad_output, input);
  const bool shape_ok = grad_output.dim() == 4 && grad_output.size(0) == g.batch &&
                        grad_output.size(1) == g.out_channels && grad_output.size(2) == g.out_h &&
                        grad_output.size(3) == g.out_w;
  TORCH_CHECK_VALUE(shape_ok, op, ": grad_output must have shape (", g.batch, ", ",
                    g.out_channels, ", ", g.out_h, ", ", g.out_w, "), got ", grad_output.sizes());
  return g;
}

void check_depthwise_weight(const char* op, const ConvGeometry& g) {
  TORCH_CHECK_VALUE(g.groups == g.in_channels && g.out_channels % g.in_channels == 0, op,
                    ": weight must have shape (channels * multiplier, 1, kH, kW) for ",
                    g.in_channels, " input channels, got out_channels = ", g.out_channels);
}

void check_pointwise_weight(const char* op, const ConvGeometry& g) {
  TORCH_CHECK_VALUE(g.kernel_h == 1 && g.kernel_w == 1 && g.groups == 1, op,
                    ": weight must have shape (out_channels, in_channels, 1, 1), got kernel (",
                    g.kernel_h, ", ", g.kernel_w, ")");
}

ConvRoute route_conv2d(const ConvGeometry& g) {
  const bool one_by_one = g.kernel_h == 1 && g.kernel_w == 1 && g.pad_h == 0 && g.pad_w == 0;
  if (one_by_one && g.groups == 1) return ConvRoute::Pointwise;
  if (g.groups == g.in_channels) return ConvRoute::Depthwise;
  return ConvRoute::Direct;
}

at::MemoryFormat conv2d_output_format(const at::Tensor& input, const at::Tensor& weight) {
  const bool channels_last = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                             weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  // On CUDA, native float64 convolutions skip cuDNN and always answer in NCHW.
  const bool cuda_double = input.is_cuda() && input.scalar_type() == at::kDouble;
  return channels_last && !cuda_double ? at::MemoryFormat::ChannelsLast
                                       : at::MemoryFormat::Contiguous;
}

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                         int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  // Floor division that rounds toward -inf, so a too-small input gives a size <= 0.
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
  // In ceil_mode the last window must start inside the input or the left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

PoolGeometry check_max_pool2d(const char* op, const at::Tensor& input, at::IntArrayRef kernel_size,
                              at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, bool ceil_mode) {
  check_floating(op, "input", input);
  check_4d(op, "input", input, "(N, C, H, W)");
  check_pair(op, "kernel_size", kernel_size);
  if (!stride.empty()) check_pair(op, "stride", stride);
  check_pair(op, "padding", padding);
  check_pair(op, "dilation", dilation);
  const at::IntArrayRef effective_stride = stride.empty() ? kernel_size : stride;
  TORCH_CHECK_VALUE(kernel_size[0] >= 1 && kernel_size[1] >= 1, op,
                    ": kernel_size must be >= 1, got ", kernel_size);
  TORCH_CHECK_VALUE(effective_stride[0] >= 1 && effective_stride[1] >= 1, op,
                    ": stride must be >= 1, got ", effective_stride);
  TORCH_CHECK_VALUE(dilation[0] >= 1 && dilation[1] >= 1, op, ": dilation must be >= 1, got ",
                    dilation);
  TORCH_CHECK_VALUE(padding[0] >= 0 && padding[1] >= 0, op, ": padding must be >= 0, got ",
                    padding);
  TORCH_CHECK_VALUE(padding[0] <= kernel_size[0] / 2 && padding[1] <= kernel_size[1] / 2, op,
                    ": padding ", padding, " must be at most half of kernel_size ", kernel_size);
  TORCH_CHECK_VALUE(input.size(1) > 0 && input.size(2) > 0 && input.size(3) > 0, op,
                    ": input must have non-empty channel and spatial sizes, got ", input.sizes());

  PoolGeometry g{};
  g.batch = input.size(0);
  g.channels = input.size(1);
  g.in_h = input.size(2);
  g.in_w = input.size(3);
  g.kernel_h = kernel_size[0];
  g.kernel_w = kernel_size[1];
  g.stride_h = effective_stride[0];
  g.stride_w = effective_stride[1];
  g.pad_h = padding[0];
  g.pad_w = padding[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  g.out_h = pool_output_size(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h, ceil_mode);
  g.out_w = pool_output_size(g.in_w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w, ceil_mode);
  TORCH_CHECK_VALUE(g.out_h >= 1 && g.out_w >= 1, op, ": kernel_size ", kernel_size,
                    " with dilation ", dilation, " and padding ", padding,
                    " does not fit the input of size (", g.in_h, ", ", g.in_w,
                    "): output size would be (", g.out_h, ", ", g.out_w, ")");
  return g;
}

}  // namespace classic_ops
