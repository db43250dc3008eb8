// The body of depthwise_microkernel.h's microkernels, for one instruction set: included
// once, by that set's file, after it defines MICROKERNEL_TARGET, the function attribute
// its code is compiled under, and includes its vector type V (see dense_microkernel_body.h).
#pragma once

#include <algorithm>
#include <type_traits>
#include <utility>

#include "conv_taps.h"
#include "depthwise_microkernel.h"

namespace classic_ops::cpu {
namespace {

// depthwise_microkernel.h's ThreeWideSweep for kRows rows, the block's nine weights held in
// registers. Each input column (the window's kRows rows) is loaded once and added into
// every output whose window covers it, carried as partial sums from output to output:
// three loads per nine FMAs (four pixels at a time across all channels took 18 input and 9
// weight loads per 36 FMAs, and GCC kept their 27 addresses on the stack). Columns outside
// the input are skipped, so border outputs need no other path.
template <typename V, int kStride, int kRows>
MICROKERNEL_TARGET void sweep_three_wide(const float* const* x_rows, const float* w, const float* bias,
                                         int64_t pixel_stride, int64_t channels, int64_t in_w, int64_t pad,
                                         int64_t begin, int64_t end, Span unchecked, float* out) {
  using Vec = typename V::Vec;
  struct Column {
    Vec row[kRows];
  };
  Vec taps[kRows][3];
#pragma GCC unroll 3
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 3
    for (int s = 0; s < 3; ++s) taps[r][s] = V::load(w + (r * 3 + s) * channels);
  }
  const float zero = 0.0f;
  const Vec init = bias ? V::load(bias) : V::broadcast(&zero);
  const float* x[kRows];  // in locals: the stores may alias anything
  for (int r = 0; r < kRows; ++r) x[r] = x_rows[r];
  auto inside = [in_w](int64_t j) { return j >= 0 && j < in_w; };
  auto column = [&](int64_t j) MICROKERNEL_TARGET __attribute__((always_inline)) {
    Column col;
#pragma GCC unroll 3
    for (int r = 0; r < kRows; ++r) col.row[r] = V::load(x[r] + j * pixel_stride);
    return col;
  };
  auto add = [&](const Column& col, int s, Vec acc) MICROKERNEL_TARGET __attribute__((always_inline)) {
#pragma GCC unroll 3
    for (int r = 0; r < kRows; ++r) acc = V::fma(col.row[r], taps[r][s], acc);
    return acc;
  };
  // Stride 1: before output o, `held` has taps 0 and 1 of o, `next` tap 0 of o + 1.
  // Stride 2: `held` has tap 0 of o.
  Vec held = init, next = init;
  const int64_t first = begin * kStride - pad;
  if (inside(first)) held = add(column(first), 0, held);
  if (kStride == 1 && inside(first + 1)) {
    const Column col = column(first + 1);
    held = add(col, 1, held);
    next = add(col, 0, next);
  }
  // Output o's last column is o * kStride - pad + 2 (and, with stride 2, the one before it).
  auto step = [&](auto checked, int64_t o) MICROKERNEL_TARGET __attribute__((always_inline)) {
    const int64_t last = o * kStride - pad + 2;
    Vec result;
    if constexpr (kStride == 2) {
      if (!checked || inside(last - 1)) held = add(column(last - 1), 1, held);
    }
    if (!checked || inside(last)) {
      const Column col = column(last);
      result = add(col, 2, held);
      if constexpr (kStride == 1) {
        held = add(col, 1, next);
        next = add(col, 0, init);
      } else {
        held = add(col, 0, init);
      }
    } else {
      result = held;
      held = kStride == 1 ? next : init;
      next = init;
    }
    V::store(out + (o - begin) * channels, result);
  };
  const int64_t unchecked_begin = std::clamp(unchecked.begin, begin, end);
  const int64_t unchecked_end = std::clamp(unchecked.end, unchecked_begin, end);
  int64_t o = begin;
  for (; o < unchecked_begin; ++o) step(std::true_type(), o);
  for (; o < unchecked_end; ++o) step(std::false_type(), o);
  for (; o < end; ++o) step(std::true_type(), o);
}

// acc[i][t] += grad_output `d` times the input under tap (i, t) of the taps from input
// column iw0 on (dilation_w apart) in the rows of `x`; with kChecked, only the taps inside
// the rows' in_w columns.
template <typename V, int kRows, int kTaps, bool kMasked, bool kChecked>
MICROKERNEL_TARGET __attribute__((always_inline)) inline void add_tap_products(
    typename V::Vec (&acc)[kRows][kTaps], typename V::Vec d, const TapGradientRows& at, int64_t iw0,
    const ConvGeometry& g, typename V::Mask mask) {
#pragma GCC unroll 7
  for (int t = 0; t < kTaps; ++t) {
    const int64_t iw = iw0 + t * g.dilation_w;
    if (kChecked && (iw < 0 || iw >= g.in_w)) continue;
    const float* column = at.x + iw * g.in_channels;
#pragma GCC unroll 3
    for (int i = 0; i < kRows; ++i) {
      const float* p = column + i * at.x_row_step;
      acc[i][t] = V::fma(d, kMasked ? V::load_masked(p, mask) : V::load(p), acc[i][t]);
    }
  }
}

// depthwise_microkernel.h's TapGradients for kRows x kTaps taps. All the taps' sums stay
// in registers along the row, so each grad_output vector loaded serves all of them; taps
// outside the input row take no product.
template <typename V, int kRows, int kTaps, bool kMasked>
MICROKERNEL_TARGET void tap_gradients(const TapGradientRows& at, const ConvGeometry& g, int64_t s0, int lanes) {
  const typename V::Mask mask = V::mask(lanes);
  typename V::Vec acc[kRows][kTaps];
#pragma GCC unroll 3
  for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 7
    for (int t = 0; t < kTaps; ++t) acc[i][t] = V::load(at.sums + i * at.sums_row_step + t * V::kLanes);
  }
  // Outputs whose first and last taps, so all of them, lie inside the row need no checks.
  const Span first = valid_outputs(g.in_w, g.out_w, g.stride_w, g.pad_w, s0 * g.dilation_w);
  const Span last = valid_outputs(g.in_w, g.out_w, g.stride_w, g.pad_w, (s0 + kTaps - 1) * g.dilation_w);
  const int64_t inner_end = std::max(first.begin, last.end);
  const int64_t tap0 = s0 * g.dilation_w - g.pad_w;
  for (int64_t ow = 0; ow < g.out_w; ++ow) {
    const float* dy = at.dy + ow * g.in_channels;
    const typename V::Vec d = kMasked ? V::load_masked(dy, mask) : V::load(dy);
    const int64_t iw0 = ow * g.stride_w + tap0;
    if (ow >= first.begin && ow < inner_end) {
      add_tap_products<V, kRows, kTaps, kMasked, false>(acc, d, at, iw0, g, mask);
    } else {
      add_tap_products<V, kRows, kTaps, kMasked, true>(acc, d, at, iw0, g, mask);
    }
  }
#pragma GCC unroll 3
  for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 7
    for (int t = 0; t < kTaps; ++t) V::store(at.sums + i * at.sums_row_step + t * V::kLanes, acc[i][t]);
  }
}

template <typename V, int kRows, int kTaps, int... I>
void fill_tap_gradients(DepthwiseMicrokernelSet& set, std::integer_sequence<int, I...>) {
  ((set.gradient_tiles[I / (kRows * kTaps)][I / kTaps % kRows][I % kTaps] =
        tap_gradients<V, I / kTaps % kRows + 1, I % kTaps + 1, (I >= kRows * kTaps)>),
   ...);
}

// The microkernels of vector type V, gradient tiles up to kRows x kTaps taps.
template <typename V, int kRows, int kTaps>
DepthwiseMicrokernelSet depthwise_microkernel_set() {
  static_assert(kRows <= DepthwiseMicrokernelSet::kMostRows && kTaps <= DepthwiseMicrokernelSet::kMostTaps);
  DepthwiseMicrokernelSet set{V::kLanes, kRows, kTaps,
                              {{sweep_three_wide<V, 1, 1>, sweep_three_wide<V, 1, 2>, sweep_three_wide<V, 1, 3>},
                               {sweep_three_wide<V, 2, 1>, sweep_three_wide<V, 2, 2>, sweep_three_wide<V, 2, 3>}},
                              {}};
  fill_tap_gradients<V, kRows, kTaps>(set, std::make_integer_sequence<int, 2 * kRows * kTaps>{});
  return set;
}

}  // namespace
}  // namespace classic_ops::cpu
