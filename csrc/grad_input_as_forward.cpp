#include "grad_input_as_forward.h"

#include <ATen/ATen.h>

namespace classic_ops {

at::Tensor spread_by_stride(const at::Tensor& grad_output, const ConvGeometry& g,
                            at::MemoryFormat format) {
  if (g.stride_h == 1 && g.stride_w == 1) return grad_output.contiguous(format);
  const ConvGeometry unit = with_unit_stride(g);
  // at::zeros would drop the memory format: allocate with at::empty, then zero.
  at::Tensor spread =
      at::empty({g.batch, g.out_channels, unit.out_h, unit.out_w}, grad_output.options(), format)
          .zero_();
  spread.slice(2, 0, (g.out_h - 1) * g.stride_h + 1, g.stride_h)
      .slice(3, 0, (g.out_w - 1) * g.stride_w + 1, g.stride_w)
      .copy_(grad_output);
  return spread;
}

bool grad_input_as_forward_applies(const ConvGeometry& g) {
  const ConvGeometry t = stride1_grad_input_as_forward(with_unit_stride(g));
  return t.pad_h >= 0 && t.pad_w >= 0;
}

}  // namespace classic_ops
