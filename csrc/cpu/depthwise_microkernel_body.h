// The body of depthwise_microkernel.h's tap gradients, for one instruction set: included
// once, by that set's file, after it defines MICROKERNEL_TARGET, the function attribute
// its code is compiled under, and includes its vector type V (see dense_microkernel_body.h).
#pragma once

#include <algorithm>
#include <utility>

#include "conv_taps.h"
#include "depthwise_microkernel.h"

namespace classic_ops::cpu {
namespace {

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
void fill_tap_gradients(TapGradientSet& set, std::integer_sequence<int, I...>) {
  ((set.kernels[I / (kRows * kTaps)][I / kTaps % kRows][I % kTaps] =
        tap_gradients<V, I / kTaps % kRows + 1, I % kTaps + 1, (I >= kRows * kTaps)>),
   ...);
}

// The tiles of vector type V up to kRows x kTaps taps.
template <typename V, int kRows, int kTaps>
TapGradientSet tap_gradient_set() {
  static_assert(kRows <= TapGradientSet::kMostRows && kTaps <= TapGradientSet::kMostTaps);
  TapGradientSet set{V::kLanes, kRows, kTaps, {}};
  fill_tap_gradients<V, kRows, kTaps>(set, std::make_integer_sequence<int, 2 * kRows * kTaps>{});
  return set;
}

}  // namespace
}  // namespace classic_ops::cpu
