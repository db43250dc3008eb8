// Max-pooling in float32 on AVX2. NaN propagates, as in PyTorch.
//
// Inference (no indices), NCHW, runs separably: a horizontal pass takes each input row's
// maxima over the kernel columns at output-column resolution, then a vertical pass takes
// the maxima of those rows over the kernel rows, eight outputs per instruction (the
// horizontal pass vectorizes strides 1 and 2 and runs other strides scalar). Both passes
// store whole vectors into scratch with slack, so rows shorter than eight, common in the
// late layers (14x14, 7x7 planes), run vectorized too: scalar code there is branchy, and
// on random data its mispredictions cost ten times the arithmetic.
// channels_last takes eight channels per instruction.
//
// With indices, NCHW, strides 1 and 2: eight neighbouring outputs per instruction scan
// their windows together over a -inf padded copy of the plane, carrying value and index
// vectors, in the same order as the scalar kernel (so ties and NaNs pick the same index);
// outputs whose window starts in the left padding run scalar, and the last few of a row
// as one vector whose extra lanes are dropped.
//
// The channels_last backward gathers: each input pixel sums, over the windows that hold it
// in ascending output order (the order of PyTorch's scatter, so the sums round alike), the
// gradients of the channels whose index names it, eight channels per instruction. Every
// element is written once, with no zeroing pass and no scattered read-modify-write, and
// rows of pixels are the tasks, so a batch of one spreads over the threads too. An index
// outside its own window (not from a forward pass) matches nowhere; the count of matches
// shows it, and the portable scatter then runs instead.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "conv_taps.h"
#include "kernels.h"
#include "avx2_vectors.h"
#include "parallel_grain.h"

namespace classic_ops::cpu {
namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// The larger of a and b, or NaN when either is NaN.
__attribute__((target("avx2"))) inline __m256 nan_max(__m256 a, __m256 b) {
  const __m256 larger = _mm256_max_ps(a, b);  // b whenever either is NaN
  return _mm256_blendv_ps(larger, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

// The same on one float, without the branch a comparison compiles to.
__attribute__((target("avx2"))) inline float nan_max(float a, float b) {
  return _mm_cvtss_f32(_mm256_castps256_ps128(
      nan_max(_mm256_castps128_ps256(_mm_set_ss(a)), _mm256_castps128_ps256(_mm_set_ss(b)))));
}


// Stores the first n <= 8 lanes of v. Not with maskstore: AMD's Zen cores microcode it,
// and it would cost more than the scalar stores.
__attribute__((target("avx2"))) inline void store_first(float* dst, __m256 v, int64_t n) {
  if (n == 8) {
    _mm256_storeu_ps(dst, v);
    return;
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  for (int64_t j = 0; j < n; ++j) dst[j] = lanes[j];
}

// Eight elements src[0], src[stride], ..., src[7 * stride] for stride 1 or 2.
__attribute__((target("avx2"))) inline __m256 load_strided(const float* src, int64_t stride) {
  if (stride == 1) return _mm256_loadu_ps(src);
  const __m256 lo = _mm256_loadu_ps(src), hi = _mm256_loadu_ps(src + 8);
  const __m256 evens = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(evens), _MM_SHUFFLE(3, 1, 2, 0)));
}

// out[j] = max over k of row[j * stride + k * dilation], j < n, for a row padded with -inf
// and readable 15 floats past the last tap of output n - 1 (the last vector's loads). For
// strides 1 and 2 whole vectors are stored: out must hold n rounded up to 8.
__attribute__((target("avx2"))) void row_maxima(const float* row, int64_t n, int64_t stride,
                                                int64_t kernel, int64_t dilation, float* out) {
  if (stride <= 2) {
    for (int64_t j = 0; j < n; j += 8) {
      __m256 best = _mm256_set1_ps(kMinusInf);
      for (int64_t k = 0; k < kernel; ++k) {
        best = nan_max(best, load_strided(row + j * stride + k * dilation, stride));
      }
      _mm256_storeu_ps(out + j, best);
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    float best = kMinusInf;
    for (int64_t k = 0; k < kernel; ++k) best = nan_max(best, row[j * stride + k * dilation]);
    out[j] = best;
  }
}

// out[j] = max over r of rows[r][j], j < n; reads nothing past rows[r][n - 1].
__attribute__((target("avx2"))) void column_maxima(const float* const* rows, int64_t count,
                                                   int64_t n, float* out) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 best = _mm256_set1_ps(kMinusInf);
    for (int64_t r = 0; r < count; ++r) best = nan_max(best, _mm256_loadu_ps(rows[r] + j));
    _mm256_storeu_ps(out + j, best);
  }
  if (j < n) {
    const __m256i mask = first_lanes(n - j);
    __m256 best = _mm256_set1_ps(kMinusInf);
    for (int64_t r = 0; r < count; ++r) best = nan_max(best, _mm256_maskload_ps(rows[r] + j, mask));
    store_first(out + j, best, n - j);
  }
}

// Width of a row padded with -inf for the vector kernels: it reaches the last tap of the
// last output, plus the 15 floats a vector of stride-2 loads reads beyond it.
int64_t padded_row_width(const PoolGeometry& g) {
  const int64_t reach = (g.out_w - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1;
  return std::max(reach, g.pad_w + g.in_w) + 16;
}

void forward_planes(const at::Tensor& input, const at::Tensor& output, const PoolGeometry& g) {
  const float* in = input.const_data_ptr<float>();
  float* out = output.mutable_data_ptr<float>();
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const int64_t padded_w = padded_row_width(g);
  // Both passes run whole vectors into scratch with 8 floats of slack; only the finished
  // output plane is copied out with a scalar tail.
  const int64_t out_w_vectors = (g.out_w + 7) / 8 * 8;
  at::parallel_for(0, g.batch * g.channels, grain_for(in_plane + out_plane), [&](int64_t begin, int64_t end) {
    // The whole plane is copied before any row is read: reading a row right after copying
    // it stalls each vector load on the copy's smaller stores (store forwarding fails).
    std::vector<float> padded(g.in_h * padded_w, kMinusInf);
    std::vector<float> row_max(g.in_h * g.out_w + 8);
    std::vector<float> plane_max(out_plane + 8);
    std::vector<const float*> window_rows(g.kernel_h);
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* src = in + plane * in_plane;
      for (int64_t ih = 0; ih < g.in_h; ++ih) {
        copy_row(src + ih * g.in_w, g.in_w, padded.data() + ih * padded_w + g.pad_w);
      }
      for (int64_t ih = 0; ih < g.in_h; ++ih) {
        row_maxima(padded.data() + ih * padded_w, g.out_w, g.stride_w, g.kernel_w, g.dilation_w,
                   row_max.data() + ih * g.out_w);
      }
      // In increasing oh: each row's last vector spills into the next row, computed later.
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        int64_t count = 0;
        for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
          const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
          if (ih >= 0 && ih < g.in_h) window_rows[count++] = row_max.data() + ih * g.out_w;
        }
        column_maxima(window_rows.data(), count, out_w_vectors, plane_max.data() + oh * g.out_w);
      }
      copy_row(plane_max.data(), out_plane, out + plane * out_plane);
    }
  });
}

__attribute__((target("avx2"))) void forward_channels_last(const at::Tensor& input,
                                                           const at::Tensor& output,
                                                           const PoolGeometry& g) {
  const float* in = input.const_data_ptr<float>();
  float* out = output.mutable_data_ptr<float>();
  const int64_t c = g.channels;
  // By output row: a pixel-indexed loop spent three 64-bit divisions per pixel, as much as
  // the maxima of a 64-channel pixel.
  const int64_t row_elements = (g.kernel_h * g.in_w + g.out_w) * c;
  at::parallel_for(0, g.batch * g.out_h, grain_for(row_elements), [&](int64_t begin, int64_t end) {
    std::vector<const float*> taps(g.kernel_h * g.kernel_w);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / g.out_h, oh = row % g.out_h;
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const PoolWindow win(g, oh, ow);
        int64_t count = 0;
        for (int64_t kh = win.rows.begin; kh < win.rows.end; ++kh) {
          const float* in_row = in + (n * g.in_h + win.row(g, kh)) * g.in_w * c;
          for (int64_t kw = win.cols.begin; kw < win.cols.end; ++kw) taps[count++] = in_row + win.col(g, kw) * c;
        }
        column_maxima(taps.data(), count, c, out + (row * g.out_w + ow) * c);
      }
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
  const int64_t padded_w = padded_row_width(g);
  // Outputs from `first_inside` on have windows that start at column 0 or later.
  const int64_t first_inside = std::min(g.out_w, (g.pad_w + g.stride_w - 1) / g.stride_w);
  at::parallel_for(0, g.batch * g.channels, grain_for(in_plane + 3 * out_plane), [&](int64_t begin, int64_t end) {
    std::vector<float> padded(g.in_h * padded_w, kMinusInf);
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* src = in + plane * in_plane;
      for (int64_t ih = 0; ih < g.in_h; ++ih) {
        copy_row(src + ih * g.in_w, g.in_w, padded.data() + ih * padded_w + g.pad_w);
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
        if (ow < g.out_w) {
          float tail_out[8];
          int64_t tail_idx[8];
          indexed_block(padded.data(), padded_w, g, PoolWindow(g, oh, ow), tail_out, tail_idx);
          std::copy_n(tail_out, g.out_w - ow, out_p + o + ow);
          std::copy_n(tail_idx, g.out_w - ow, idx_p + o + ow);
        }
      }
    }
  });
}

// pixel[c], c < channels, is the sum in window order of grad[windows[w] + c] over the
// windows w < window_count whose indices[windows[w] + c] is position; returns how many
// were. Windows that miss add +0, which leaves the sum as it was: it starts at +0, and a
// sum is -0 only when both terms are.
__attribute__((target("avx2"))) int64_t gather_pixel(
    float* pixel, const int64_t* indices, const float* grad, const int64_t* windows,
    int64_t window_count, int64_t position, int64_t channels) {
  const __m256i target = _mm256_set1_epi64x(position);
  // The 32-bit halves of the two 64-bit compares, interleaved by the blend, back in order.
  const __m256i halves_in_order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  __m256i minus_matched = _mm256_setzero_si256();  // a hit lane adds -1
  int64_t c = 0;
  for (; c + 8 <= channels; c += 8) {
    __m256 sum = _mm256_setzero_ps();
    for (int64_t w = 0; w < window_count; ++w) {
      const int64_t* idx = indices + windows[w] + c;
      const __m256i low =
          _mm256_cmpeq_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), target);
      const __m256i high =
          _mm256_cmpeq_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + 4)), target);
      const __m256i hit = _mm256_permutevar8x32_epi32(_mm256_blend_epi32(low, high, 0xAA),
                                                      halves_in_order);
      const __m256 added = _mm256_loadu_ps(grad + windows[w] + c);
      sum = _mm256_add_ps(sum, _mm256_and_ps(_mm256_castsi256_ps(hit), added));
      minus_matched = _mm256_add_epi32(minus_matched, hit);
    }
    _mm256_storeu_ps(pixel + c, sum);
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), minus_matched);
  int64_t matched = 0;
  for (const int32_t lane : lanes) matched -= lane;
  for (; c < channels; ++c) {
    float sum = 0.0f;
    for (int64_t w = 0; w < window_count; ++w) {
      const bool hit = indices[windows[w] + c] == position;
      sum += hit ? grad[windows[w] + c] : 0.0f;
      matched += hit;
    }
    pixel[c] = sum;
  }
  return matched;
}

}  // namespace

bool max_pool2d_grad_input_avx2(const at::Tensor& grad_output, const at::Tensor& indices,
                                const at::Tensor& grad_input, const PoolGeometry& g) {
  if (grad_input.suggest_memory_format() != at::MemoryFormat::ChannelsLast) return false;
  const float* gout = grad_output.const_data_ptr<float>();
  const int64_t* idx = indices.const_data_ptr<int64_t>();
  float* gin = grad_input.mutable_data_ptr<float>();
  const int64_t channels = g.channels, out_image = g.out_h * g.out_w * channels;
  const AxisSources rows(g.in_h, g.out_h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h);
  const AxisSources cols(g.in_w, g.out_w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
  std::atomic<int64_t> matched{0};
  at::parallel_for(0, g.batch * g.in_h, grain_for(2 * g.in_w * channels), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> windows(g.kernel_h * g.kernel_w);  // offsets of a pixel's windows
    int64_t task_matched = 0;
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / g.in_h, h = row % g.in_h;
      for (int64_t w = 0; w < g.in_w; ++w) {
        // Sources come by rising tap, so by falling output: backwards, outputs rise.
        int64_t window_count = 0;
        for (const TapSource* r = rows.end(h); r-- != rows.begin(h);) {
          for (const TapSource* c = cols.end(w); c-- != cols.begin(w);) {
            windows[window_count++] = (r->out * g.out_w + c->out) * channels;
          }
        }
        const int64_t position = h * g.in_w + w;
        task_matched += gather_pixel(gin + (n * g.in_h * g.in_w + position) * channels,
                                     idx + n * out_image, gout + n * out_image, windows.data(),
                                     window_count, position, channels);
      }
    }
    matched += task_matched;
  });
  return matched.load() == g.batch * out_image;
}

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
