// grad_input of a convolution computed by a forward convolution kernel, for every
// backend: grad_output spread by the stride (with_unit_stride), then the forward
// convolution of stride1_grad_input_as_forward (both in geometry.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

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

// A cheaper way for unit dilation, phase by phase of the stride. One dimension of a phase:
// the input positions first, first + stride, ... (count of them) receive gradient only
// from the kernel taps tap0, tap0 + stride, ... (taps of them; none when tap0 >= kernel),
// position first + stride * m reading grad_output at m + shift + j for tap number
// taps - 1 - j. So over a phase grad_input is a stride-1 forward convolution of grad_output
// with those taps flipped, and no multiply meets the zeros of a spread grad_output.
struct StridePhase {
  int64_t first, count, tap0, taps, shift;
};

inline StridePhase stride_phase(int64_t first, int64_t in, int64_t kernel, int64_t stride,
                                int64_t pad) {
  StridePhase p{first, (in - first + stride - 1) / stride, (first + pad) % stride, 0, 0};
  if (p.tap0 < kernel) p.taps = (kernel - p.tap0 + stride - 1) / stride;
  p.shift = (first + pad - p.tap0) / stride - (p.taps - 1);
  return p;
}

// The forward convolution of phase (ph, pw) of grad_input of g: that of the stride-1
// convolution from the phase's positions (its input) to grad_output padded by taps - 1
// (its output), so channels swapped, stride 1, no padding, over phase_grad_output's planes.
inline ConvGeometry phase_as_forward(const ConvGeometry& g, const StridePhase& ph,
                                     const StridePhase& pw) {
  ConvGeometry phase = g;
  phase.kernel_h = ph.taps;
  phase.kernel_w = pw.taps;
  phase.in_h = ph.count;
  phase.in_w = pw.count;
  phase.out_h = ph.count + ph.taps - 1;
  phase.out_w = pw.count + pw.taps - 1;
  phase.pad_h = ph.taps - 1;
  phase.pad_w = pw.taps - 1;
  phase.stride_h = phase.stride_w = 1;
  return stride1_grad_input_as_forward(phase);
}

// The input of that forward convolution: zeroed NCHW planes (row m is grad_output row
// m + ph.shift where that exists), followed by `slack` zeroed floats, written to the start
// of `storage` (of grad_output's dtype, that many elements or more).
at::Tensor phase_grad_output(const at::Tensor& grad_output, const ConvGeometry& g,
                             const StridePhase& ph, const StridePhase& pw, int64_t slack,
                             const at::Tensor& storage);

// The zeros around grad_output's `out` rows (or columns) that make the input of every
// phase (phase_grad_output) a window of them: its row m is grad_output row m + shift.
inline int64_t phase_window_padding(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad) {
  int64_t padding = 0;
  for (int64_t first = 0; first < std::min(stride, in); ++first) {
    const StridePhase p = stride_phase(first, in, kernel, stride, pad);
    if (p.taps > 0) padding = std::max({padding, -p.shift, p.shift + p.count + p.taps - 1 - out});
  }
  return padding;
}

// Calls phase_fn(ph, pw, view) for each phase of grad_input (NCHW, unit dilation) that
// some tap reaches, with `view` its positions in grad_input; zeroes the others.
template <typename PhaseFn>
void for_each_stride_phase(const ConvGeometry& g, const at::Tensor& grad_input, PhaseFn&& phase_fn) {
  const bool strided = g.stride_h != 1 || g.stride_w != 1;
  for (int64_t first_h = 0; first_h < std::min(g.stride_h, g.in_h); ++first_h) {
    for (int64_t first_w = 0; first_w < std::min(g.stride_w, g.in_w); ++first_w) {
      const StridePhase ph = stride_phase(first_h, g.in_h, g.kernel_h, g.stride_h, g.pad_h);
      const StridePhase pw = stride_phase(first_w, g.in_w, g.kernel_w, g.stride_w, g.pad_w);
      const at::Tensor view =
          strided ? grad_input.slice(2, first_h, std::nullopt, g.stride_h).slice(3, first_w, std::nullopt, g.stride_w)
                  : grad_input;
      if (ph.taps == 0 || pw.taps == 0) {
        view.zero_();
      } else {
        phase_fn(ph, pw, view);
      }
    }
  }
}

}  // namespace classic_ops
