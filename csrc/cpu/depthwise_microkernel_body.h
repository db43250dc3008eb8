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

// Vector loads of the first `lanes` channels where kMasked, whole ones otherwise.
template <typename V, bool kMasked>
MICROKERNEL_TARGET __attribute__((always_inline)) inline typename V::Vec load_lanes(const float* p,
                                                                                  typename V::Mask mask) {
  return kMasked ? V::load_masked(p, mask) : V::load(p);
}

template <typename V, bool kMasked>
MICROKERNEL_TARGET __attribute__((always_inline)) inline void store_lanes(float* p, typename V::Mask mask,
                                                                         typename V::Vec v) {
  if (kMasked) {
    V::store_masked(p, mask, v);
  } else {
    V::store(p, v);
  }
}

template <typename V>
MICROKERNEL_TARGET __attribute__((always_inline)) inline typename V::Vec zeros() {
  const float zero = 0.0f;
  return V::broadcast(&zero);
}

// The block's bias, or zeros without one.
template <typename V, bool kMasked>
MICROKERNEL_TARGET __attribute__((always_inline)) inline typename V::Vec bias_or_zero(const float* bias,
                                                                                    typename V::Mask mask) {
  return bias ? load_lanes<V, kMasked>(bias, mask) : zeros<V>();
}

// A pixels kernel's P sums, started at the bias, and stored at the end, pixels `channels`
// floats apart.
template <typename V, int P, bool kMasked>
MICROKERNEL_TARGET __attribute__((always_inline)) inline void start_sums(typename V::Vec (&acc)[P],
                                                                        const float* bias, typename V::Mask mask) {
  const typename V::Vec init = bias_or_zero<V, kMasked>(bias, mask);
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p) acc[p] = init;
}

template <typename V, int P, bool kMasked>
MICROKERNEL_TARGET __attribute__((always_inline)) inline void store_pixels(const typename V::Vec (&acc)[P], float* out,
                                                                          int64_t channels, typename V::Mask mask) {
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p) store_lanes<V, kMasked>(out + p * channels, mask, acc[p]);
}

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
  const Vec init = bias_or_zero<V, false>(bias, V::mask(V::kLanes));
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

// depthwise_microkernel.h's PixelsKernel for any window, tap by tap: P sums in flight, each
// weight vector loaded serving P FMAs.
template <typename V, int P, bool kMasked>
MICROKERNEL_TARGET void window_pixels(const InputRows& x, const float* w, const float* bias, float* out_px,
                                      const ConvGeometry& g, int64_t oh, int64_t ow, Span rows, int64_t c,
                                      int lanes) {
  const typename V::Mask mask = V::mask(lanes);
  const int64_t channels = g.in_channels, kernel_w = g.kernel_w;
  const int64_t pixel_step = g.stride_w * x.pixel_stride, tap_step = g.dilation_w * x.pixel_stride;
  typename V::Vec acc[P];
  start_sums<V, P, kMasked>(acc, bias ? bias + c : nullptr, mask);
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    const float* x_row = x.row(oh * g.stride_h - g.pad_h + r * g.dilation_h) +
                         (ow * g.stride_w - g.pad_w) * x.pixel_stride + c;
    const float* w_row = w + r * kernel_w * channels + c;
    for (int64_t s = 0; s < kernel_w; ++s, x_row += tap_step) {
      const typename V::Vec wv = load_lanes<V, kMasked>(w_row + s * channels, mask);
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) acc[p] = V::fma(load_lanes<V, kMasked>(x_row + p * pixel_step, mask), wv, acc[p]);
    }
  }
  store_pixels<V, P, kMasked>(acc, out_px + c, channels, mask);
}

// depthwise_microkernel.h's PixelsKernel for rows of kTaps taps at stride kStride and
// dilation 1 along the row: each kernel row's kTaps weight vectors held in registers, each
// input column loaded once and added into every output pixel whose window covers it (a
// 7x7 window at stride 1: 13 loads per 49 FMAs, against 56 tap by tap, which left
// MobileNet's 32x112x112 layer at 60 GFLOP/s, one thread, AVX2; 93 so).
template <typename V, int P, int kTaps, int kStride, bool kMasked>
MICROKERNEL_TARGET void sliding_pixels(const InputRows& x, const float* w, const float* bias, float* out_px,
                                       const ConvGeometry& g, int64_t oh, int64_t ow, Span rows, int64_t c,
                                       int lanes) {
  const typename V::Mask mask = V::mask(lanes);
  const int64_t channels = g.in_channels, step = x.pixel_stride;
  typename V::Vec acc[P];
  start_sums<V, P, kMasked>(acc, bias ? bias + c : nullptr, mask);
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    const float* x_row =
        x.row(oh * g.stride_h - g.pad_h + r * g.dilation_h) + (ow * kStride - g.pad_w) * step + c;
    typename V::Vec taps[kTaps];
#pragma GCC unroll 8
    for (int s = 0; s < kTaps; ++s) taps[s] = load_lanes<V, kMasked>(w + (r * kTaps + s) * channels + c, mask);
#pragma GCC unroll 40
    for (int j = 0; j < (P - 1) * kStride + kTaps; ++j) {
      const typename V::Vec column = load_lanes<V, kMasked>(x_row + j * step, mask);
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) {
        const int s = j - p * kStride;
        if (s >= 0 && s < kTaps) acc[p] = V::fma(column, taps[s], acc[p]);
      }
    }
  }
  store_pixels<V, P, kMasked>(acc, out_px + c, channels, mask);
}

// depthwise_microkernel.h's StrideTwoGradInputRow, a block of channels at a time (a
// generic gather of each pixel's sources ran MobileNet's 64x112x112 layer at half of
// native's speed, one thread, AVX2).
template <typename V>
MICROKERNEL_TARGET void stride_two_grad_input_row(const float* const* dy_rows, const float* const* w_rows, int count,
                                                  int64_t channels, int64_t out_w, int64_t in_w, float* out_row) {
  // In locals: the stores may alias anything.
  const float* rows[2] = {dy_rows[0], count > 1 ? dy_rows[1] : nullptr};
  const float* taps[2] = {w_rows[0], count > 1 ? w_rows[1] : nullptr};
  const typename V::Mask tail = V::mask(static_cast<int>(channels % V::kLanes));
  const auto pixel_pair = [&](auto masked, int64_t m, int64_t c, bool next, bool odd)
                              MICROKERNEL_TARGET __attribute__((always_inline)) {
    constexpr bool kMasked = decltype(masked)::value;
    typename V::Vec even = zeros<V>(), odd_sum = even;
    for (int i = 0; i < count; ++i) {
      const float* a = rows[i] + m * channels + c;
      const float* t = taps[i] + c;
      const typename V::Vec here = load_lanes<V, kMasked>(a, tail);
      even = V::fma(here, load_lanes<V, kMasked>(t + channels, tail), even);
      odd_sum = V::fma(here, load_lanes<V, kMasked>(t + 2 * channels, tail), odd_sum);
      if (next) odd_sum = V::fma(load_lanes<V, kMasked>(a + channels, tail), load_lanes<V, kMasked>(t, tail), odd_sum);
    }
    float* out = out_row + 2 * m * channels + c;
    store_lanes<V, kMasked>(out, tail, even);
    if (odd) store_lanes<V, kMasked>(out + channels, tail, odd_sum);
  };
  const int64_t whole = channels / V::kLanes * V::kLanes;
  for (int64_t m = 0; m < out_w; ++m) {
    const bool next = m + 1 < out_w, odd = 2 * m + 1 < in_w;
    for (int64_t c = 0; c < whole; c += V::kLanes) pixel_pair(std::false_type(), m, c, next, odd);
    if (whole < channels) pixel_pair(std::true_type(), m, whole, next, odd);
  }
}

// depthwise_microkernel.h's PlaneTapGradients: one sweep for all the taps, each with its
// own sum (one tap at a time, every FMA waited on the one before, 4 cycles each).
template <typename V, int kTaps>
MICROKERNEL_TARGET void plane_tap_gradients(const float* grad_output, const float* x, const int64_t* offsets,
                                            int64_t x_row_step, int64_t out_h, int64_t out_w, float* sums) {
  int64_t offset[kTaps];
  typename V::Vec acc[kTaps];
  for (int i = 0; i < kTaps; ++i) {
    offset[i] = offsets[i];
    acc[i] = zeros<V>();
  }
  const int64_t full = out_w / V::kLanes * V::kLanes;
  const typename V::Mask tail = V::mask(static_cast<int>(out_w - full));
  for (int64_t oh = 0; oh < out_h; ++oh, grad_output += out_w, x += x_row_step) {
    for (int64_t ow = 0; ow < full; ow += V::kLanes) {
      const typename V::Vec gv = V::load(grad_output + ow);
#pragma GCC unroll 9
      for (int i = 0; i < kTaps; ++i) acc[i] = V::fma(gv, V::load(x + offset[i] + ow), acc[i]);
    }
    if (full == out_w) continue;
    // Both operands zeroed past the row (an infinite input there must not meet a 0);
    // grad_output is read whole where the plane continues.
    const typename V::Vec gv = (out_h - oh) * out_w - full >= V::kLanes ? V::load_zeroing(grad_output + full, tail)
                                                                       : V::load_masked(grad_output + full, tail);
#pragma GCC unroll 9
    for (int i = 0; i < kTaps; ++i) acc[i] = V::fma(gv, V::load_zeroing(x + offset[i] + full, tail), acc[i]);
  }
  // Four taps' lane sums at a time; past kTaps, the last repeats (add_lane_sums writes only
  // the first `count`).
  for (int i = 0; i < kTaps; i += 4) {
    const int count = std::min(4, kTaps - i);
    V::add_lane_sums(sums + i, count, acc[i], acc[std::min(i + 1, kTaps - 1)], acc[std::min(i + 2, kTaps - 1)],
                     acc[std::min(i + 3, kTaps - 1)]);
  }
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
      acc[i][t] = V::fma(d, load_lanes<V, kMasked>(p, mask), acc[i][t]);
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
    const typename V::Vec d = load_lanes<V, kMasked>(dy, mask);
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

template <typename V, bool kMasked, int... I>
void fill_pixels(DepthwiseMicrokernelSet& set, std::integer_sequence<int, I...>) {
  ((set.window_pixels[kMasked][I] = window_pixels<V, I + 1, kMasked>), ...);
  ((set.sliding_pixels[kMasked][0][0][I] = sliding_pixels<V, I + 1, 5, 1, kMasked>), ...);
  ((set.sliding_pixels[kMasked][0][1][I] = sliding_pixels<V, I + 1, 5, 2, kMasked>), ...);
  ((set.sliding_pixels[kMasked][1][0][I] = sliding_pixels<V, I + 1, 7, 1, kMasked>), ...);
  ((set.sliding_pixels[kMasked][1][1][I] = sliding_pixels<V, I + 1, 7, 2, kMasked>), ...);
}

template <typename V, int... I>
void fill_plane_tap_gradients(DepthwiseMicrokernelSet& set, std::integer_sequence<int, I...>) {
  ((set.plane_tap_gradients[I] = plane_tap_gradients<V, I + 1>), ...);
}

template <typename V, int kRows, int kTaps, int... I>
void fill_tap_gradients(DepthwiseMicrokernelSet& set, std::integer_sequence<int, I...>) {
  ((set.gradient_tiles[I / (kRows * kTaps)][I / kTaps % kRows][I % kTaps] =
        tap_gradients<V, I / kTaps % kRows + 1, I % kTaps + 1, (I >= kRows * kTaps)>),
   ...);
}

// The microkernels of vector type V, gradient tiles up to kRows x kTaps taps.
template <typename V, int kRows, int kTaps, int kPixels>
DepthwiseMicrokernelSet depthwise_microkernel_set() {
  static_assert(kRows <= DepthwiseMicrokernelSet::kMostRows && kTaps <= DepthwiseMicrokernelSet::kMostTaps);
  DepthwiseMicrokernelSet set{V::kLanes, kRows, kTaps, kPixels,
                              {{sweep_three_wide<V, 1, 1>, sweep_three_wide<V, 1, 2>, sweep_three_wide<V, 1, 3>},
                               {sweep_three_wide<V, 2, 1>, sweep_three_wide<V, 2, 2>, sweep_three_wide<V, 2, 3>}},
                              {}, {}, stride_two_grad_input_row<V>, {}};
  constexpr auto pixel_counts = std::make_integer_sequence<int, kPixels>{};
  fill_pixels<V, false>(set, pixel_counts);
  fill_pixels<V, true>(set, pixel_counts);
  fill_plane_tap_gradients<V>(set, std::make_integer_sequence<int, DepthwiseMicrokernelSet::kMostPlaneTaps>{});
  fill_tap_gradients<V, kRows, kTaps>(set, std::make_integer_sequence<int, 2 * kRows * kTaps>{});
  return set;
}

}  // namespace
}  // namespace classic_ops::cpu
