// The dense convolution's register-tile microkernel, as the drivers in
// dense_conv2d_avx2.cpp see it: a tile of P "pixels" (broadcast operands) by B vectors of
// lanes (vector operands), one table of instantiations per instruction set. The body is
// dense_microkernel_body.h, compiled once per set in a file of its own
// (dense_microkernels_avx2.cpp, dense_microkernels_avx512.cpp), each under its own target.
#pragma once

#include <cstdint>

namespace classic_ops::cpu {

// Where the microkernel reads and writes, in floats. The tile is P "pixels" (broadcast
// operands of x) by B vectors of lanes (vector operands of w), reduced over `depth` steps
// and the kernel taps.
struct TileSteps {
  int64_t pixel;      // x: from one tile pixel to the next
  int64_t tap_row;    // x: from one kernel row to the next
  int64_t tap_col;    // x: from one kernel column to the next
  int64_t x_step;     // x: per reduction step
  int64_t block;      // w: from one lane vector to the next
  int64_t w_tap_row;  // w: from one kernel row to the next
  int64_t w_tap_col;  // w: from one kernel column to the next
  int64_t w_step;     // w: per reduction step
  int64_t out_pixel;  // y: from one pixel to the next
  int64_t kernel_h, kernel_w, depth;
  // Reduction steps outside the taps: where one step's coefficients for all taps lie
  // together (a (K, C, R, S) weight read in place) rather than one tap's for all steps.
  bool depth_outer = false;
  // A bias per pixel, broadcast over the lanes, rather than one per lane.
  bool bias_per_pixel = false;
};

// y[p][b] = init + sum over taps and reduction steps of x * w, where init is `bias` (one
// vector per block, or with st.bias_per_pixel one value per pixel) or, when bias is null,
// y itself (accumulation). The last vector holds `last_block_lanes` valid lanes: masked
// loads and stores keep inside them.
using Microkernel = void (*)(const float* x, const float* w, const float* bias, float* y,
                             const TileSteps& st, int last_block_lanes);

// out[i * out_row + j] += the dot product of the n floats at a + i * a_row and at
// b + j * b_row, for a tile of rows of a by rows of b: reductions along rows contiguous in
// both operands (a 1x1 grad_weight over NCHW planes) need neither operand transposed.
using DotTile = void (*)(const float* a, int64_t a_row, const float* b, int64_t b_row, int64_t n, float* out,
                         int64_t out_row);

// The largest tiles of an instruction set: `pixels` x `blocks` vectors of `lanes` floats,
// and dot-product tiles of `dot_rows` x MicrokernelSet::kDotCols. `long_pixels` x
// `long_blocks` is a second shape, one pixel longer and a vector narrower, for rows that
// tiles of `pixels` split badly (7 pixels as 4 + 3); forward_dense picks one per layer.
struct TileShape {
  int lanes, pixels, blocks, dot_rows, long_pixels, long_blocks;
};

// AVX2/FMA: 6 pixels x 2 vectors of 8 lanes (12 of the 16 ymm registers accumulate); dot
// products 3 x 4 (12 accumulators, 3 + 1 operand vectors).
// No long tile: 7 x 2 accumulators and 2 + 1 operands would not fit in 16 registers.
constexpr TileShape kAvx2Tile{8, 6, 2, 3, 6, 2};
// AVX-512: 6 pixels x 4 vectors of 16 lanes (24 of the 32 zmm registers accumulate); dot
// products 6 x 4 (24 accumulators, 6 + 1 operands: 10 loads for 24 FMAs where 3 x 4 takes
// 7 for 12). On CPUs whose FMA units are 512 bits wide (AMD Zen 5, Intel's server cores)
// twice the arithmetic of AVX2 per instruction and per cycle. Long tiles 7 x 3 (21
// accumulators).
constexpr TileShape kAvx512Tile{16, 6, 4, 6, 7, 3};

// One instruction set's microkernels: at(b, p) is the tile of p <= tile.pixels pixels by
// b <= tile.blocks vectors of tile.lanes floats, or of p <= tile.long_pixels by
// b <= tile.long_blocks, dot(i, j) the dot-product tile of
// i <= tile.dot_rows rows by j <= kDotCols. fma_chains is the loop that measures the set's peak
// (calibration.cpp): `iterations` steps of as many independent FMA chains as a whole tile
// has accumulators, flops_per_iteration() floating-point operations a step.
struct MicrokernelSet {
  static constexpr int kMostBlocks = 4, kMostPixels = 7, kMostDotRows = 6;
  // Four columns: a dot-product tile's row sums the lanes of its four accumulators together,
  // the shuffles shared, and adds the four sums to its output row in one vector.
  static constexpr int kDotCols = 4;
  TileShape tile;
  Microkernel kernels[kMostBlocks][kMostPixels];
  DotTile dot_tiles[kMostDotRows][kDotCols];
  float (*fma_chains)(int64_t iterations);
  Microkernel at(int b, int p) const { return kernels[b - 1][p - 1]; }
  DotTile dot(int i, int j) const { return dot_tiles[i - 1][j - 1]; }
  int64_t flops_per_iteration() const { return int64_t{2} * tile.pixels * tile.blocks * tile.lanes; }
};

extern const MicrokernelSet kAvx2Microkernels;
extern const MicrokernelSet kAvx512Microkernels;

}  // namespace classic_ops::cpu
