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

at::Tensor phase_grad_output(const at::Tensor& grad_output, const ConvGeometry& g,
                             const StridePhase& ph, const StridePhase& pw, int64_t slack,
                             const at::Tensor& storage) {
  const ConvGeometry t = phase_as_forward(g, ph, pw);
  const int64_t count = g.batch * g.out_channels * t.in_h * t.in_w;
  at::Tensor planes = storage.narrow(0, 0, count + slack).zero_().narrow(0, 0, count)
                          .view({g.batch, g.out_channels, t.in_h, t.in_w});
  const int64_t row0 = std::max<int64_t>(0, -ph.shift), row1 = std::min(t.in_h, g.out_h - ph.shift);
  const int64_t col0 = std::max<int64_t>(0, -pw.shift), col1 = std::min(t.in_w, g.out_w - pw.shift);
  if (row0 < row1 && col0 < col1) {
    planes.narrow(2, row0, row1 - row0).narrow(3, col0, col1 - col0)
        .copy_(grad_output.narrow(2, row0 + ph.shift, row1 - row0).narrow(3, col0 + pw.shift, col1 - col0));
  }
  return planes;
}

bool grad_input_as_forward_applies(const ConvGeometry& g) {
  const ConvGeometry t = stride1_grad_input_as_forward(with_unit_stride(g));
  return t.pad_h >= 0 && t.pad_w >= 0;
}

}  // namespace classic_ops
