// Depthwise float32 convolution (channel multiplier 1) on AVX2/FMA over channels_last
// input and output: eight channels per instruction, four output pixels per pass so each
// weight vector loaded serves four FMAs, all channels of those pixels before moving on so
// input is read in memory order. Border pixels take only their valid taps.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "conv_taps.h"
#include "kernels.h"

namespace classic_ops::cpu {
namespace {

constexpr int64_t kLanes = 8;
constexpr int64_t kPixels = 4;

// (C, 1, R, S) -> (R, S, C): the weights of one tap are contiguous over channels.
at::Tensor taps_by_channel(const at::Tensor& weight) {
  return weight.reshape({weight.size(0), weight.size(2) * weight.size(3)}).t().contiguous();
}

__attribute__((target("avx2"))) inline __m256 load(const float* p, bool masked, __m256i mask) {
  return masked ? _mm256_maskload_ps(p, mask) : _mm256_loadu_ps(p);
}

// The general case: output pixels [ow, ow + P) of row (n, oh), channels from
// first_channel on, eight at a time, with only the taps inside the input. Masked loads and
// stores (slow on some CPUs) only for the last, partial block of channels.
template <int P>
__attribute__((target("avx2,fma"))) void pixels(const float* in, const float* w, const float* bias,
                                                float* out, const ConvGeometry& g, int64_t n,
                                                int64_t oh, int64_t ow, Span rows,
                                                int64_t first_channel = 0) {
  const int64_t channels = g.in_channels;
  Span cols[P];
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) {
    cols[p] = window_taps((ow + p) * g.stride_w - g.pad_w, g.kernel_w, g.dilation_w, g.in_w);
  }
  float* out_px = out + ((n * g.out_h + oh) * g.out_w + ow) * channels;
  for (int64_t c = first_channel; c < channels; c += kLanes) {
    const bool masked = c + kLanes > channels;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(channels - c)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 acc[P];
    const __m256 init = bias ? load(bias + c, masked, mask) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) acc[p] = init;
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      const int64_t ih = oh * g.stride_h - g.pad_h + r * g.dilation_h;
      const float* in_row = in + (n * g.in_h + ih) * g.in_w * channels + c;
      for (int64_t s = 0; s < g.kernel_w; ++s) {
        const __m256 wv = load(w + (r * g.kernel_w + s) * channels + c, masked, mask);
#pragma GCC unroll 4
        for (int p = 0; p < P; ++p) {
          if (s < cols[p].begin || s >= cols[p].end) continue;
          const int64_t iw = (ow + p) * g.stride_w - g.pad_w + s * g.dilation_w;
          acc[p] = _mm256_fmadd_ps(load(in_row + iw * channels, masked, mask), wv, acc[p]);
        }
      }
    }
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      if (masked) {
        _mm256_maskstore_ps(out_px + p * channels + c, mask, acc[p]);
      } else {
        _mm256_storeu_ps(out_px + p * channels + c, acc[p]);
      }
    }
  }
}

// The fast case: P pixels whose windows lie inside the input rows `rows` and all columns,
// full blocks of eight channels; no bounds checks, no masks.
template <int P>
__attribute__((target("avx2,fma"))) void interior_pixels(const float* in, const float* w,
                                                         const float* bias, float* out,
                                                         const ConvGeometry& g, int64_t n,
                                                         int64_t oh, int64_t ow, Span rows,
                                                         int64_t full_channels) {
  const int64_t channels = g.in_channels;
  const int64_t pixel_step = g.stride_w * channels, tap_step = g.dilation_w * channels;
  const float* in_first = in + (n * g.in_h * g.in_w + ow * g.stride_w - g.pad_w) * channels;
  float* out_px = out + ((n * g.out_h + oh) * g.out_w + ow) * channels;
  for (int64_t c = 0; c < full_channels; c += kLanes) {
    __m256 acc[P];
    const __m256 init = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) acc[p] = init;
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      const int64_t ih = oh * g.stride_h - g.pad_h + r * g.dilation_h;
      const float* x = in_first + ih * g.in_w * channels + c;
      const float* wr = w + r * g.kernel_w * channels + c;
      for (int64_t s = 0; s < g.kernel_w; ++s) {
        const __m256 wv = _mm256_loadu_ps(wr + s * channels);
#pragma GCC unroll 4
        for (int p = 0; p < P; ++p) {
          acc[p] = _mm256_fmadd_ps(_mm256_loadu_ps(x + p * pixel_step + s * tap_step), wv, acc[p]);
        }
      }
    }
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) _mm256_storeu_ps(out_px + p * channels + c, acc[p]);
  }
}

void run_row(const float* in, const float* w, const float* bias, float* out, const ConvGeometry& g,
             int64_t n, int64_t oh) {
  const Span rows = window_taps(oh * g.stride_h - g.pad_h, g.kernel_h, g.dilation_h, g.in_h);
  // Output columns whose every tap lies inside the input.
  const Span inner = valid_outputs(g.in_w, g.out_w, g.stride_w, g.pad_w, 0);
  const Span inner_last = valid_outputs(g.in_w, g.out_w, g.stride_w, g.pad_w, (g.kernel_w - 1) * g.dilation_w);
  const int64_t first = inner.begin, last = std::max(first, inner_last.end);
  const int64_t full_channels = g.in_channels / kLanes * kLanes;
  int64_t ow = 0;
  for (; ow < first; ++ow) pixels<1>(in, w, bias, out, g, n, oh, ow, rows);
  for (; ow + kPixels <= last; ow += kPixels) {
    interior_pixels<kPixels>(in, w, bias, out, g, n, oh, ow, rows, full_channels);
  }
  for (; ow < last; ++ow) interior_pixels<1>(in, w, bias, out, g, n, oh, ow, rows, full_channels);
  for (; ow < g.out_w; ++ow) pixels<1>(in, w, bias, out, g, n, oh, ow, rows);
  if (full_channels == g.in_channels) return;
  // The last, partial block of channels of the interior pixels.
  for (ow = first; ow < last; ++ow) pixels<1>(in, w, bias, out, g, n, oh, ow, rows, full_channels);
}

}  // namespace

void depthwise_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& output,
                                   const ConvGeometry& g) {
  const at::Tensor w = taps_by_channel(weight);
  const float* in = input.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  const float* bp = bias.defined() ? bias.const_data_ptr<float>() : nullptr;
  float* out = output.mutable_data_ptr<float>();
  at::parallel_for(0, g.batch * g.out_h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) run_row(in, wp, bp, out, g, row / g.out_h, row % g.out_h);
  });
}

}  // namespace classic_ops::cpu
