// The channels_last depthwise grad_weight's microkernel, as depthwise_conv2d_avx2.cpp sees
// it: the sums of a tile of kernel taps over one output row, for one block of channels (a
// vector's lanes), one table of instantiations per instruction set. The body is
// depthwise_microkernel_body.h, compiled once per set in a file of its own
// (depthwise_microkernels_avx2.cpp, depthwise_microkernels_avx512.cpp), each under its
// own target, as the dense microkernels are.
#pragma once

#include <cstdint>

#include "../geometry.h"

namespace classic_ops::cpu {

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

// One instruction set's tiles: at(rows, taps, lanes) for rows <= tile_rows, taps <=
// tile_taps and lanes <= the set's `lanes`.
struct TapGradientSet {
  static constexpr int kMostRows = 3, kMostTaps = 7;
  int lanes, tile_rows, tile_taps;
  TapGradients kernels[2][kMostRows][kMostTaps];  // [a partial block][rows - 1][taps - 1]
  TapGradients at(int64_t rows, int64_t taps, int block_lanes) const {
    return kernels[block_lanes < lanes][rows - 1][taps - 1];
  }
};

// AVX2: tiles up to 3 x 4 taps of 8 channels (12 accumulators and 2 operands of the 16
// ymm registers). AVX-512: up to 3 x 7 of 16 (21 of 32 zmm registers: a 7x7 window in
// three passes along the row, each grad_output vector loaded serving up to 21 FMAs).
extern const TapGradientSet kAvx2TapGradients;
extern const TapGradientSet kAvx512TapGradients;

}  // namespace classic_ops::cpu
