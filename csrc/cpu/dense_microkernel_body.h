// The body of dense_microkernel.h's microkernel, for one instruction set: included once,
// by that set's file, after it defines MICROKERNEL_TARGET, the function attribute its code
// is compiled under, and includes its vector type V (Avx2Vectors in avx2_vectors.h,
// Avx512Vectors in avx512_vectors.h).
//
// Each pixel's broadcast meets B weight vectors, each weight vector P pixels: per
// reduction step B vector loads and P broadcasts feed P x B independent FMA chains.
#pragma once

#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>

#include "dense_microkernel.h"

namespace classic_ops::cpu {
namespace {

// acc[p][b] += x[p * pixel] * w[b * block] for one tap and reduction step.
template <typename V, int P, int B>
MICROKERNEL_TARGET __attribute__((always_inline)) inline void multiply_step(
    typename V::Vec (&acc)[P][B], const float* x, const float* w, int64_t pixel, int64_t block) {
  typename V::Vec wv[B];
#pragma GCC unroll 4
  for (int b = 0; b < B; ++b) wv[b] = V::load(w + b * block);
#pragma GCC unroll 7
  for (int p = 0; p < P; ++p) {
    const typename V::Vec xv = V::broadcast(x + p * pixel);
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) acc[p][b] = V::fma(xv, wv[b], acc[p][b]);
  }
}

// dense_microkernel.h's Microkernel for the tile of P pixels by B vectors. (Vector values
// never cross the boundary to code compiled for another target: the ABIs differ.)
template <typename V, int P, int B>
MICROKERNEL_TARGET void microkernel(const float* x, const float* w, const float* bias, float* y,
                                          const TileSteps& st, int last_block_lanes) {
  const typename V::Mask store_mask = V::mask(last_block_lanes);
  typename V::Vec acc[P][B];
#pragma GCC unroll 4
  for (int b = 0; b < B; ++b) {
    const bool masked = b == B - 1 && last_block_lanes != V::kLanes;
#pragma GCC unroll 7
    for (int p = 0; p < P; ++p) {
      if (bias && st.bias_per_pixel) {
        acc[p][b] = V::broadcast(bias + p);
        continue;
      }
      const float* init = bias ? bias + b * V::kLanes : y + p * st.out_pixel + b * V::kLanes;
      acc[p][b] = masked && !bias ? V::load_masked(init, store_mask) : V::load(init);
    }
  }
  // The tile loops are fully unrolled (multiply_step), so the accumulators live in
  // registers; the steps are copied to locals, or they are reloaded at every step.
  const int64_t pixel = st.pixel, block = st.block, x_step = st.x_step, w_step = st.w_step;
  const int64_t tap_row = st.tap_row, tap_col = st.tap_col;
  const int64_t w_tap_row = st.w_tap_row, w_tap_col = st.w_tap_col;
  const int64_t kernel_h = st.kernel_h, kernel_w = st.kernel_w, depth = st.depth;
  if (st.depth_outer) {
    for (int64_t c = 0; c < depth; ++c, x += x_step, w += w_step) {
      for (int64_t r = 0; r < kernel_h; ++r) {
        for (int64_t s = 0; s < kernel_w; ++s) {
          multiply_step<V, P, B>(acc, x + r * tap_row + s * tap_col, w + r * w_tap_row + s * w_tap_col,
                                 pixel, block);
        }
      }
    }
  } else {
    for (int64_t r = 0; r < kernel_h; ++r) {
      for (int64_t s = 0; s < kernel_w; ++s) {
        const float* xs = x + r * tap_row + s * tap_col;
        const float* ws = w + r * w_tap_row + s * w_tap_col;
        for (int64_t c = 0; c < depth; ++c, xs += x_step, ws += w_step) {
          multiply_step<V, P, B>(acc, xs, ws, pixel, block);
        }
      }
    }
  }
#pragma GCC unroll 7
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) {
      float* out = y + p * st.out_pixel + b * V::kLanes;
      if (b == B - 1 && last_block_lanes != V::kLanes) {
        V::store_masked(out, store_mask, acc[p][b]);
      } else {
        V::store(out, acc[p][b]);
      }
    }
  }
}

// acc[i][j] += a[i * a_row + q ...] * b[j * b_row + q ...] for one vector of each row,
// the lanes of `mask` of it where kMasked.
template <typename V, int I, int J, bool kMasked>
MICROKERNEL_TARGET __attribute__((always_inline)) inline void dot_step(
    typename V::Vec (&acc)[I][J], const float* a, int64_t a_row, const float* b, int64_t b_row,
    typename V::Mask mask) {
  typename V::Vec av[I];
#pragma GCC unroll 6
  for (int i = 0; i < I; ++i) av[i] = kMasked ? V::load_masked(a + i * a_row, mask) : V::load(a + i * a_row);
#pragma GCC unroll 4
  for (int j = 0; j < J; ++j) {
    const typename V::Vec bv = kMasked ? V::load_masked(b + j * b_row, mask) : V::load(b + j * b_row);
#pragma GCC unroll 6
    for (int i = 0; i < I; ++i) acc[i][j] = V::fma(av[i], bv, acc[i][j]);
  }
}

// dense_microkernel.h's DotTile for I rows of a by J <= 4 rows of b: I x J accumulator
// vectors summed across their lanes at the end, a row of four at a time; a partial last
// vector is read masked (no reads past the rows).
template <typename V, int I, int J>
MICROKERNEL_TARGET void dot_tile(const float* a, int64_t a_row, const float* b, int64_t b_row, int64_t n,
                                       float* out, int64_t out_row) {
  typename V::Vec acc[I][J];
  const float zero = 0.0f;
#pragma GCC unroll 6
  for (int i = 0; i < I; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) acc[i][j] = V::broadcast(&zero);
  }
  const typename V::Mask whole = V::mask(V::kLanes);
  int64_t q = 0;
  for (; q + V::kLanes <= n; q += V::kLanes) dot_step<V, I, J, false>(acc, a + q, a_row, b + q, b_row, whole);
  if (q < n) dot_step<V, I, J, true>(acc, a + q, a_row, b + q, b_row, V::mask(static_cast<int>(n - q)));
  static_assert(J <= MicrokernelSet::kDotCols);
  // Columns past J repeat the first; add_lane_sums writes only J sums.
  constexpr int j1 = J > 1 ? 1 : 0, j2 = J > 2 ? 2 : 0, j3 = J > 3 ? 3 : 0;
#pragma GCC unroll 6
  for (int i = 0; i < I; ++i) {
    V::add_lane_sums(out + i * out_row, J, acc[i][0], acc[i][j1], acc[i][j2], acc[i][j3]);
  }
}

// `iterations` steps of kChains independent chains of FMAs, for MicrokernelSet::fma_chains.
template <typename V, int kChains>
MICROKERNEL_TARGET float fma_chains(int64_t iterations) {
  const float scale = 0.999999f, shift = 1e-7f;
  const typename V::Vec scales = V::broadcast(&scale), shifts = V::broadcast(&shift);
  typename V::Vec acc[kChains];
  for (int i = 0; i < kChains; ++i) {
    const float start = 1.0f + i * 1e-3f;
    acc[i] = V::broadcast(&start);
  }
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = V::fma(acc[i], scales, shifts);
  }
  // The sum of the chains, so that none of them is optimized away.
  for (int i = 1; i < kChains; ++i) acc[0] = V::fma(acc[i], scales, acc[0]);
  float lanes[V::kLanes];
  V::store(lanes, acc[0]);
  return lanes[0];
}

// Tiles of B vectors, P + 1 pixels for each P: those within `shape` or its long tile.
template <typename V, TileShape shape, int B, int... P>
void fill_tiles_of_blocks(MicrokernelSet& set, std::integer_sequence<int, P...>) {
  const auto fill = [&](auto pixels) {
    constexpr int kPixels = decltype(pixels)::value;
    if constexpr (kPixels <= shape.pixels || B <= shape.long_blocks) {
      set.kernels[B - 1][kPixels - 1] = microkernel<V, kPixels, B>;
    }
  };
  (fill(std::integral_constant<int, P + 1>{}), ...);
}

template <typename V, int I, int... J>
void fill_dot_tiles_of_rows(MicrokernelSet& set, std::integer_sequence<int, J...>) {
  ((set.dot_tiles[I - 1][J] = dot_tile<V, I, J + 1>), ...);
}

template <typename V, int... I>
void fill_dot_tiles(MicrokernelSet& set, std::integer_sequence<int, I...>) {
  (fill_dot_tiles_of_rows<V, I + 1>(set, std::make_integer_sequence<int, MicrokernelSet::kDotCols>{}), ...);
}

template <typename V, TileShape shape, int... B>
MicrokernelSet microkernel_set(std::integer_sequence<int, B...>) {
  MicrokernelSet set{shape, {}, {}, fma_chains<V, shape.pixels * shape.blocks>};
  constexpr int kLongestRow = std::max(shape.pixels, shape.long_pixels);
  (fill_tiles_of_blocks<V, shape, B + 1>(set, std::make_integer_sequence<int, kLongestRow>{}), ...);
  fill_dot_tiles<V>(set, std::make_integer_sequence<int, shape.dot_rows>{});
  return set;
}

// The tiles of vector type V up to `shape` (whose lanes must be V's).
template <typename V, TileShape shape>
MicrokernelSet microkernel_set() {
  static_assert(shape.lanes == V::kLanes);
  static_assert(shape.pixels <= MicrokernelSet::kMostPixels && shape.blocks <= MicrokernelSet::kMostBlocks &&
                shape.dot_rows <= MicrokernelSet::kMostDotRows);
  static_assert(shape.long_pixels <= MicrokernelSet::kMostPixels && shape.long_blocks <= shape.blocks &&
                shape.long_pixels * shape.long_blocks <= shape.pixels * shape.blocks);
  return microkernel_set<V, shape>(std::make_integer_sequence<int, shape.blocks>{});
}

}  // namespace
}  // namespace classic_ops::cpu
