// Shape and argument checks shared by every backend and every op. They raise Python
// exceptions (TypeError / ValueError) that name the offending argument, and they guard
// C++ callers of the ops just the same.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <optional>

#include "geometry.h"

namespace classic_ops {

enum class ConvRoute { Direct, Depthwise, Pointwise };

// Validates a forward convolution and returns its geometry. `op` prefixes every message.
ConvGeometry check_conv2d(const char* op, const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// Validates the arguments of conv2d_grad_input / conv2d_grad_weight: the forward checks
// plus grad_output's shape, dtype and device.
ConvGeometry check_conv2d_backward(const char* op, const at::Tensor& grad_output,
                                   const at::Tensor& input, const at::Tensor& weight,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int64_t groups);

void check_depthwise_weight(const char* op, const ConvGeometry& g);
void check_pointwise_weight(const char* op, const ConvGeometry& g);

ConvRoute route_conv2d(const ConvGeometry& g);

// The memory format PyTorch's own convolution gives its output (and gradients).
at::MemoryFormat conv2d_output_format(const at::Tensor& input, const at::Tensor& weight);

// An empty stride means stride = kernel_size, as in ATen.
PoolGeometry check_max_pool2d(const char* op, const at::Tensor& input, at::IntArrayRef kernel_size,
                              at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, bool ceil_mode);

// Output length of a pooling window sweep, with PyTorch's ceil_mode rule.
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                         int64_t dilation, bool ceil_mode);

}  // namespace classic_ops
