// grad_input of a convolution computed by a forward convolution kernel, for every
// backend: grad_output spread by the stride (with_unit_stride), then the forward
// convolution of stride1_grad_input_as_forward (both in geometry.h).
#pragma once

#include <ATen/core/Tensor.h>

#include "geometry.h"

namespace classic_ops {

// grad_output (N, K, out_h, out_w) of convolution g as the output of with_unit_stride(g):
// itself for stride 1, else zeros with grad_output at every stride-th position. Contiguous
// in `format`.
at::Tensor spread_by_stride(const at::Tensor& grad_output, const ConvGeometry& g,
                            at::MemoryFormat format);

// Whether a forward kernel can compute grad_input of g this way: the padding of the
// equivalent forward convolution must not be negative.
bool grad_input_as_forward_applies(const ConvGeometry& g);

}  // namespace classic_ops
