// The index geometry every CPU convolution and pooling kernel walks: for one kernel tap
// (r, s), the rows of output positions whose input position lies inside the (unpadded)
// input (the forward pass, grad_input and grad_weight differ only in what they do with each
// row), the taps of one pooling window, and the outputs that read each input position.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../checks.h"

namespace classic_ops::cpu {

struct Span {
  int64_t begin, end;
};

// Output positions o in [0, out) with 0 <= o * stride - pad + offset < in.
inline Span valid_outputs(int64_t in, int64_t out, int64_t stride, int64_t pad, int64_t offset) {
  const int64_t shift = offset - pad;
  const int64_t begin = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
  const int64_t end = in - 1 - shift >= 0 ? std::min(out, (in - 1 - shift) / stride + 1) : 0;
  return {std::min(begin, end), end};
}

// Taps k in [0, kernel) of a window starting at input position `start` (possibly in the
// padding) that land inside [0, in). An empty span keeps `begin` at the first tap at or
// after position 0: PyTorch's max-pool reports that position for a window with no input.
inline Span window_taps(int64_t start, int64_t kernel, int64_t dilation, int64_t in) {
  const int64_t begin = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  const int64_t end = in - 1 - start >= 0 ? std::min(kernel, (in - 1 - start) / dilation + 1) : 0;
  return {begin, std::max(begin, end)};
}

// A pooling window at output (oh, ow): its first input row and column (possibly in the
// padding) and its taps inside the input.
struct PoolWindow {
  int64_t h0, w0;
  Span rows, cols;
  PoolWindow(const PoolGeometry& g, int64_t oh, int64_t ow)
      : h0(oh * g.stride_h - g.pad_h), w0(ow * g.stride_w - g.pad_w),
        rows(window_taps(h0, g.kernel_h, g.dilation_h, g.in_h)),
        cols(window_taps(w0, g.kernel_w, g.dilation_w, g.in_w)) {}
  int64_t row(const PoolGeometry& g, int64_t kh) const { return h0 + kh * g.dilation_h; }
  int64_t col(const PoolGeometry& g, int64_t kw) const { return w0 + kw * g.dilation_w; }
  // PyTorch's index for a window whose taps are all -inf (or that holds no input at all).
  int64_t first_index(const PoolGeometry& g) const {
    return row(g, rows.begin) * g.in_w + col(g, cols.begin);
  }
};

// Where an input position takes gradient from along one axis: kernel tap `tap` of output
// position `out` reads it.
struct TapSource {
  int64_t tap, out;
};

// The TapSources of each input position along one axis, those of position i at
// [first[i], first[i + 1]) of `sources`, by rising tap (so by falling output).
struct AxisSources {
  std::vector<TapSource> sources;
  std::vector<int64_t> first;
  AxisSources(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
              int64_t dilation) {
    for (int64_t i = 0; i < in; ++i) {
      first.push_back(static_cast<int64_t>(sources.size()));
      for (int64_t k = 0; k < kernel; ++k) {
        const int64_t o = reading_output(i, k, stride, pad, dilation, out);
        if (o >= 0) sources.push_back({k, o});
      }
    }
    first.push_back(static_cast<int64_t>(sources.size()));
  }
  const TapSource* begin(int64_t i) const { return sources.data() + first[i]; }
  const TapSource* end(int64_t i) const { return sources.data() + first[i + 1]; }
};

// NaN wins, as in PyTorch: a NaN in a window is the window's max (the last NaN, for the
// index); among equal values the first one scanned.
template <typename acc_t>
inline bool replaces_max(acc_t value, acc_t current) {
  return value > current || std::isnan(value);
}

// The maximum of one window and its index in the H*W plane; value(ih, iw) reads the input.
template <typename acc_t, typename Value>
inline void window_max(const PoolWindow& win, const PoolGeometry& g, Value&& value, acc_t& best,
                       int64_t& best_at) {
  best = -std::numeric_limits<acc_t>::infinity();
  best_at = win.first_index(g);
  for (int64_t kh = win.rows.begin; kh < win.rows.end; ++kh) {
    const int64_t ih = win.row(g, kh);
    for (int64_t kw = win.cols.begin; kw < win.cols.end; ++kw) {
      const int64_t iw = win.col(g, kw);
      const acc_t v = value(ih, iw);
      if (replaces_max(v, best)) {
        best = v;
        best_at = ih * g.in_w + iw;
      }
    }
  }
}

// Calls row(output_offset, input_offset, length) for each output row of tap (r, s):
// output elements output_offset + j pair with input elements input_offset + j * stride_w,
// offsets taken within one H*W plane.
template <typename RowFn>
inline void for_each_tap_row(const ConvGeometry& g, int64_t r, int64_t s, RowFn&& row) {
  const Span rows = valid_outputs(g.in_h, g.out_h, g.stride_h, g.pad_h, r * g.dilation_h);
  const Span cols = valid_outputs(g.in_w, g.out_w, g.stride_w, g.pad_w, s * g.dilation_w);
  if (cols.begin >= cols.end) return;
  const int64_t first_iw = cols.begin * g.stride_w - g.pad_w + s * g.dilation_w;
  for (int64_t oh = rows.begin; oh < rows.end; ++oh) {
    const int64_t ih = oh * g.stride_h - g.pad_h + r * g.dilation_h;
    row(oh * g.out_w + cols.begin, ih * g.in_w + first_iw, cols.end - cols.begin);
  }
}

// y[j] += a * x[j * stride]; the unit-stride loop is split out so it vectorizes.
template <typename acc_t, typename scalar_t>
inline void axpy_strided(acc_t* y, const scalar_t* x, acc_t a, int64_t n, int64_t stride) {
  if (stride == 1) {
    for (int64_t j = 0; j < n; ++j) y[j] += a * static_cast<acc_t>(x[j]);
  } else {
    for (int64_t j = 0; j < n; ++j) y[j] += a * static_cast<acc_t>(x[j * stride]);
  }
}

// y[j * stride] += a * x[j]
template <typename acc_t, typename scalar_t>
inline void axpy_scatter(acc_t* y, const scalar_t* x, acc_t a, int64_t n, int64_t stride) {
  for (int64_t j = 0; j < n; ++j) y[j * stride] += a * static_cast<acc_t>(x[j]);
}

// sum_j x[j] * y[j * stride]
template <typename acc_t, typename scalar_t>
inline acc_t dot_strided(const scalar_t* x, const scalar_t* y, int64_t n, int64_t stride) {
  acc_t sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += static_cast<acc_t>(x[j]) * static_cast<acc_t>(y[j * stride]);
  return sum;
}

}  // namespace classic_ops::cpu
