// Max-pooling in float32 on AVX2. NaN propagates, as in PyTorch.
//
// Inference (no indices), NCHW, runs separably: a horizontal pass takes each input row's
// maxima over the kernel columns at output-column resolution, then a vertical pass takes
// the maxima of those rows over the kernel rows, eight outputs per instruction (the
// horizontal pass vectorizes strides 1 and 2 and runs other strides scalar).
// channels_last takes eight channels per instruction.
//
// With indices, NCHW, strides 1 and 2: eight neighbouring outputs per instruction scan
// their windows together over a -inf padded copy of the plane, carrying value and index
// vectors, in the same order as the scalar kernel (so ties and NaNs pick the same index);
// outputs whose window starts in the left padding, and the last few of a row, run scalar.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <limits>
#include <vector>

#include "conv_taps.h"
#include "kernels.h"

namespace classic_ops::cpu {
namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// The larger of a and b, or NaN when either is NaN.
__attribute__((target("avx2"))) inline __m256 nan_max(__m256 a, __m256 b) {
  const __m256 larger = _mm256_max_ps(a, b);  // b whenever either is NaN
  return _mm256_blendv_ps(larger, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

inline float nan_max(float a, float b) { return (b > a || std::isnan(b)) ? b : a; }

// Eight elements src[0], src[stride], ..., src[7 * stride] for stride 1 or 2.
__attribute__((target("avx2"))) inline __m256 load_strided(const float* src, int64_t stride) {
  if (stride == 1) return _mm256_loadu_ps(src);
  const __m256 lo = _mm256_loadu_ps(src), hi = _mm256_loadu_ps(src + 8);
  const __m256 evens = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(evens), _MM_SHUFFLE(3, 1, 2, 0)));
}

// out[j] = max over k of row[j * stride + k * dilation], j < n, for a row already padded
// with -inf.
__attribute__((target("avx2"))) void row_maxima(const float* row, int64_t n, int64_t stride,
                                                int64_t kernel, int64_t dilation, float* out) {
  int64_t j = 0;
  if (stride <= 2) {
    for (; j + 8 <= n; j += 8) {
      __m256 best = _mm256_set1_ps(kMinusInf);
      for (int64_t k = 0; k < kernel; ++k) {
        best = nan_max(best, load_strided(row + j * stride + k * dilation, stride));
      }
      _mm256_storeu_ps(out + j, best);
    }
  }
  for (; j < n; ++j) {
    float best = kMinusInf;
    for (int64_t k = 0; k < kernel; ++k) best = nan_max(best, row[j * stride + k * dilation]);
    out[j] = best;
  }
}

__attribute__((target("avx2"))) void column_maxima(const float* const* rows, int64_t count,
                                                   int64_t n, float* out) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 best = _mm256_set1_ps(kMinusInf);
    for (int64_t r = 0; r < count; ++r) best = nan_max(best, _mm256_loadu_ps(rows[r] + j));
    _mm256_storeu_ps(out + j, best);
  }
  for (; j < n; ++j) {
    float best = kMinusInf;
    for (int64_t r = 0; r < count; ++r) best = nan_max(best, rows[r][j]);
    out[j] = best;
  }
}

void forward_planes(const at::Tensor& input, const at::Tensor& output, const PoolGeometry& g) {
  const float* in = input.const_data_ptr<float>();
  float* out = output.mutable_data_ptr<float>();
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  // The padded row must reach the last tap of the last output, plus 8 floats of slack
  // for the stride-2 loads that read 16 floats to keep 8.
  const int64_t reach = (g.out_w - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1;
  const int64_t padded_w = std::max(reach, g.pad_w + g.in_w) + 16;
  at::parallel_for(0, g.batch * g.channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> padded(padded_w, kMinusInf);
    std::vector<float> row_max(g.in_h * g.out_w);
    std::vector<const float*> window_rows(g.kernel_h);
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* src = in + plane * in_plane;
      for (int64_t ih = 0; ih < g.in_h; ++ih) {
        std::copy_n(src + ih * g.in_w, g.in_w, padded.begin() + g.pad_w);
        row_maxima(padded.data(), g.out_w, g.stride_w, g.kernel_w, g.dilation_w,
                   row_max.data() + ih * g.out_w);
      }
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        int64_t count = 0;
        for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
          const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
          if (ih >= 0 && ih < g.in_h) window_rows[count++] = row_max.data() + ih * g.out_w;
        }
        column_maxima(window_rows.data(), count, g.out_w, out + plane * out_plane + oh * g.out_w);
      }
    }
  });
}

__attribute__((target("avx2"))) void forward_channels_last(const at::Tensor& input,
                                                           const at::Tensor& output,
                                                           const PoolGeometry& g) {
  const float* in = input.const_data_ptr<float>();
  float* out = output.mutable_data_ptr<float>();
  const int64_t c = g.channels;
  at::parallel_for(0, g.batch * g.out_h * g.out_w, 1, [&](int64_t begin, int64_t end) {
    std::vector<const float*> taps(g.kernel_h * g.kernel_w);
    for (int64_t pixel = begin; pixel < end; ++pixel) {
      const int64_t n = pixel / (g.out_h * g.out_w);
      const int64_t oh = pixel / g.out_w % g.out_h, ow = pixel % g.out_w;
      int64_t count = 0;
      for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
        const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
        if (ih < 0 || ih >= g.in_h) continue;
        for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
          const int64_t iw = ow * g.stride_w - g.pad_w + kw * g.dilation_w;
          if (iw >= 0 && iw < g.in_w) taps[count++] = in + ((n * g.in_h + ih) * g.in_w + iw) * c;
        }
      }
      column_maxima(taps.data(), count, c, out + pixel * c);
    }
  });
}

// Eight outputs (oh, ow .. ow + 7) whose windows start inside the left edge.
__attribute__((target("avx2"))) void indexed_block(const float* padded, int64_t padded_w,
                                                   const PoolGeometry& g, const PoolWindow& first,
                                                   float* out, int64_t* idx) {
  const int s = static_cast<int>(g.stride_w);
  const __m256i lane_offsets = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
  __m256 best = _mm256_set1_ps(kMinusInf);
  __m256i best_at =
      _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first.first_index(g))), lane_offsets);
  for (int64_t kh = first.rows.begin; kh < first.rows.end; ++kh) {
    const int64_t ih = first.row(g, kh);
    const float* row = padded + ih * padded_w + g.pad_w;  // row[iw] is input column iw
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t iw = first.col(g, kw);
      const __m256 v = load_strided(row + iw, g.stride_w);
      const __m256 replaces = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ),
                                           _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      const __m256i at =
          _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(ih * g.in_w + iw)), lane_offsets);
      best = _mm256_blendv_ps(best, v, replaces);
      best_at = _mm256_blendv_epi8(best_at, at, _mm256_castps_si256(replaces));
    }
  }
  _mm256_storeu_ps(out, best);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx),
                      _mm256_cvtepi32_epi64(_mm256_castsi256_si128(best_at)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + 4),
                      _mm256_cvtepi32_epi64(_mm256_extracti128_si256(best_at, 1)));
}

void indexed_output(const float* plane, const PoolGeometry& g, int64_t oh, int64_t ow, float* out,
                    int64_t* idx) {
  window_max(PoolWindow(g, oh, ow), g, [&](int64_t ih, int64_t iw) { return plane[ih * g.in_w + iw]; },
             *out, *idx);
}

void indexed_planes(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                    const PoolGeometry& g) {
  const float* in = input.const_data_ptr<float>();
  float* out = output.mutable_data_ptr<float>();
  int64_t* idx = indices.mutable_data_ptr<int64_t>();
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const int64_t reach = (g.out_w - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1;
  const int64_t padded_w = std::max(reach, g.pad_w + g.in_w) + 16;  // + stride-2 load slack
  // Outputs from `first_inside` on have windows that start at column 0 or later.
  const int64_t first_inside = std::min(g.out_w, (g.pad_w + g.stride_w - 1) / g.stride_w);
  at::parallel_for(0, g.batch * g.channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> padded(g.in_h * padded_w, kMinusInf);
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* src = in + plane * in_plane;
      for (int64_t ih = 0; ih < g.in_h; ++ih) {
        std::copy_n(src + ih * g.in_w, g.in_w, padded.begin() + ih * padded_w + g.pad_w);
      }
      float* out_p = out + plane * out_plane;
      int64_t* idx_p = idx + plane * out_plane;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const int64_t o = oh * g.out_w;
        int64_t ow = 0;
        for (; ow < first_inside; ++ow) indexed_output(src, g, oh, ow, out_p + o + ow, idx_p + o + ow);
        for (; ow + 8 <= g.out_w; ow += 8) {
          indexed_block(padded.data(), padded_w, g, PoolWindow(g, oh, ow), out_p + o + ow,
                        idx_p + o + ow);
        }
        for (; ow < g.out_w; ++ow) indexed_output(src, g, oh, ow, out_p + o + ow, idx_p + o + ow);
      }
    }
  });
}

}  // namespace

bool max_pool2d_with_indices_avx2(const at::Tensor& input, const at::Tensor& output,
                                  const at::Tensor& indices, const PoolGeometry& g) {
  // int32 index lanes, and the stride-1/2 loads of the inference kernel.
  if (input.suggest_memory_format() != at::MemoryFormat::Contiguous || g.stride_w > 2 ||
      g.in_h * g.in_w >= (int64_t{1} << 31)) {
    return false;
  }
  indexed_planes(input, output, indices, g);
  return true;
}

void max_pool2d_inference_avx2(const at::Tensor& input, const at::Tensor& output,
                               const PoolGeometry& g) {
  if (input.suggest_memory_format() == at::MemoryFormat::ChannelsLast) {
    forward_channels_last(input, output, g);
  } else {
    forward_planes(input, output, g);
  }
}

}  // namespace classic_ops::cpu
