// The depthwise microkernels, as depthwise_conv2d_avx2.cpp sees them. Over channels_last,
// each for one block of channels (a vector's lanes) along one output row: the forward sweep
// of MobileNet's 3x3 windows, the forward of other windows a few pixels at a time, the
// grad_input of its 3x3 stride-2 windows and grad_weight's sums of a tile of kernel taps.
// Over NCHW, grad_weight's sums over a plane, a vector of columns at a time. One table of
// instantiations per instruction set; the body is depthwise_microkernel_body.h, compiled
// once per set in a file of its own (depthwise_microkernels_avx2.cpp,
// depthwise_microkernels_avx512.cpp), each under its own target, as the dense
// microkernels are.
#pragma once

#include <cstdint>

#include "../geometry.h"
#include "conv_taps.h"

namespace classic_ops::cpu {

// The input rows a forward kernel reads: row ih of the image at base + (ih % ring) *
// row_stride (ring: the image's height where rows are read in place), pixels
// pixel_stride floats apart.
struct InputRows {
  const float* base;
  int64_t ring, row_stride, pixel_stride;
  const float* row(int64_t ih) const { return base + ih % ring * row_stride; }
};

// P output pixels [ow, ow + P) of output row oh, one block of channels from channel c
// (`lanes` of them: a partial block's kernel reads and writes only those), read from
// copies of the input rows whose padding columns are zeros, so that every tap is inside
// them (and whose pixels hold whole vectors of eight floats). `w`: the weight, taps
// outer; `out_px`: output pixel ow's channel 0.
using PixelsKernel = void (*)(const InputRows& x, const float* w, const float* bias, float* out_px,
                              const ConvGeometry& g, int64_t oh, int64_t ow, Span rows, int64_t c, int lanes);

// Where one block of channels of a grad_weight pass reads and adds: `dy` its grad_output
// row, `x` the input row under kernel row r0 (kernel row r0 + i is i * x_row_step
// further), `sums` the sums of tap (r0, s0) (tap (r0 + i, s0 + t) is i * sums_row_step +
// t * lanes further). Pixels are in_channels floats apart.
struct TapGradientRows {
  const float* dy;
  const float* x;
  int64_t x_row_step;
  float* sums;
  int64_t sums_row_step;
};

// The sums of a tile of kernel rows r0 on (all inside the input) by taps s0 on += the sum
// over one output row of grad_output times the input under each tap, for one block of
// channels: the first `lanes` of them read (the block's sums are whole vectors).
using TapGradients = void (*)(const TapGradientRows& at, const ConvGeometry& g, int64_t s0, int lanes);

// A row of a grad_input for MobileNet's downsampling windows (3x3, stride 2, padding 1, no
// dilation) by pairs of pixels (2m, 2m + 1), all channels: 2m takes tap 1 of output m,
// 2m + 1 taps 2 and 0 of outputs m and m + 1 (where there is one), from each of the `count`
// (1 or 2) grad_output rows that reach the row, dy_rows[i] through the kernel row whose
// taps start at w_rows[i] (taps and pixels `channels` floats apart). The row has in_w
// pixels, the grad_output rows out_w.
using StrideTwoGradInputRow = void (*)(const float* const* dy_rows, const float* const* w_rows, int count,
                                       int64_t channels, int64_t out_w, int64_t in_w, float* out_row);

// The NCHW grad_weight's sums for kTaps taps of one plane: sums[i] += the sum over the
// output plane (out_h x out_w, rows contiguous) of grad_output times the input under tap
// i, whose scratch position for output (0, 0) is x + offsets[i]; `x_row_step`: the
// scratch step between output rows, whose rows hold whole vectors past the outputs.
using PlaneTapGradients = void (*)(const float* grad_output, const float* x, const int64_t* offsets,
                                   int64_t x_row_step, int64_t out_h, int64_t out_w, float* sums);

// MobileNet's windows (3x3, stride 1 or 2 along the row, no dilation along it) for one
// whole block of channels along outputs [begin, end) of an output row, from the window's
// rows inside the input (the sweep's own count of them): `x_rows` those rows at input
// column 0 and the block's first channel, pixels `pixel_stride` floats apart; `w` the
// taps of the first of them, `channels` floats apart; `bias` the block's (or null); `out`
// output `begin`, pixels `channels` floats apart. Outputs in `unchecked` read only columns
// inside [0, in_w); the others skip the columns outside.
using ThreeWideSweep = void (*)(const float* const* x_rows, const float* w, const float* bias,
                                int64_t pixel_stride, int64_t channels, int64_t in_w, int64_t pad,
                                int64_t begin, int64_t end, Span unchecked, float* out);

// One instruction set's microkernels: sweep(stride, rows) for stride 1 or 2 and 1-3 rows
// inside the input; pixels(g, P, partial) for P <= most_pixels pixels of g's window, a
// partial block or not (the tables' entries past most_pixels are empty);
// stride_two_grad_input_row; plane_tap_gradients[taps - 1] for up to kMostPlaneTaps taps;
// tap_gradients(rows, taps, block_lanes) for rows <= tile_rows, taps <= tile_taps and
// block_lanes <= lanes.
struct DepthwiseMicrokernelSet {
  static constexpr int kMostRows = 3, kMostTaps = 7, kMostPixels = 16;
  // most_pixels: output pixels a call of the pixels kernels, as many sums in flight as the
  // registers hold beside a row's weights. (On AVX2, four pixels at a time, the borders read
  // in place one pixel at a time, ran a 7x7 window at 0.2-0.6x of native; eight so. On
  // AVX-512 16 ran 7x7 windows 3-25% faster than 8, one thread.)
  // A 3x3 window in one sweep: 9 sums and 2 operands in AVX2's 16 registers.
  static constexpr int kMostPlaneTaps = 9;
  int lanes, tile_rows, tile_taps, most_pixels;
  ThreeWideSweep sweeps[2][3];                           // [stride - 1][rows - 1]
  PixelsKernel window_pixels[2][kMostPixels];            // [a partial block][P - 1]
  PixelsKernel sliding_pixels[2][2][2][kMostPixels];     // [a partial block][7 taps][stride - 1][P - 1]
  StrideTwoGradInputRow stride_two_grad_input_row;
  PlaneTapGradients plane_tap_gradients[kMostPlaneTaps];
  TapGradients gradient_tiles[2][kMostRows][kMostTaps];  // [a partial block][rows - 1][taps - 1]
  ThreeWideSweep sweep(int64_t stride, int64_t rows) const { return sweeps[stride - 1][rows - 1]; }
  // Rows of 5 or 7 taps at stride 1 or 2 with no dilation along them slide (each input
  // column loaded once for the pixels whose windows cover it); other windows go tap by tap.
  PixelsKernel pixels(const ConvGeometry& g, int64_t count, bool partial) const {
    if (g.dilation_w == 1 && g.stride_w <= 2 && (g.kernel_w == 5 || g.kernel_w == 7)) {
      return sliding_pixels[partial][g.kernel_w == 7][g.stride_w - 1][count - 1];
    }
    return window_pixels[partial][count - 1];
  }
  TapGradients tap_gradients(int64_t rows, int64_t taps, int block_lanes) const {
    return gradient_tiles[block_lanes < lanes][rows - 1][taps - 1];
  }
};

// AVX2: 8 channels a vector, 8 pixels a call; gradient tiles up to 3 x 4 taps (12
// accumulators and 2 operands of the 16 ymm registers). AVX-512: 16 channels, 16 pixels;
// tiles up to 3 x 7 (21 of 32 zmm registers: a 7x7 window in three passes along the row,
// each grad_output vector loaded serving up to 21 FMAs).
extern const DepthwiseMicrokernelSet kAvx2DepthwiseMicrokernels;
extern const DepthwiseMicrokernelSet kAvx512DepthwiseMicrokernels;

}  // namespace classic_ops::cpu
