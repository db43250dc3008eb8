// Depthwise float32 convolution on AVX2/FMA, eight lanes per instruction (channels_last
// on AVX-512 where the CPU has it).
//
// channels_last (channel multiplier 1): a vector of channels per instruction, by the
// microkernels of depthwise_microkernel.h (8 on AVX2, 16 on AVX-512). 3x3 windows with
// stride 1 or 2 along the row (MobileNet's) sweep one block of channels along a segment of
// an output row with its nine weights in registers, each input column loaded once for all
// the outputs it serves. Other windows read copies of the input rows padded with zeros,
// so that every pixel takes every tap, 8 (AVX2) or 16 (AVX-512) output pixels per call, all channels of
// those pixels before moving on; rows of 5 or 7 taps at stride 1 or 2 slide like the 3x3
// sweeps, a kernel row's weights in registers. grad_weight passes a tile of taps' sums
// along each output row.
//
// NCHW (any multiplier): the planes as they are, eight output columns per instruction,
// sixteen per pass, a band of output rows at a time. The input rows a band reads are first
// copied, zero-padded, into scratch split by column phase (column x of phase q holds
// padded column x * stride_w + q), so every tap of eight neighbouring outputs is one
// contiguous load whatever the stride and dilation, and the inner loop has no bounds
// checks. 3x3 windows hold their weights in registers; others go four output rows per
// pass, each input vector loaded once for all the rows that read it. grad_weight sweeps the
// same scratch for nine taps at a time, sixteen columns a vector on AVX-512 where the rows
// fill them as well as eight.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <numeric>
#include <optional>
#include <type_traits>
#include <vector>

#include "../grad_input_as_forward.h"
#include "avx2_vectors.h"
#include "conv_taps.h"
#include "depthwise_microkernel.h"
#include "isa.h"
#include "kernels.h"
#include "parallel_grain.h"
#include "scratch.h"
#include "weight_cache.h"

namespace classic_ops::cpu {
namespace {

constexpr int64_t kLanes = 8;

int64_t whole_vectors(int64_t floats) { return (floats + kLanes - 1) / kLanes * kLanes; }

// (C, 1, R, S) -> (R, S, C): the weights of one tap are contiguous over channels.
at::Tensor taps_outer(const at::Tensor& weight) {
  return weight.reshape({weight.size(0), weight.size(2) * weight.size(3)}).t().contiguous();
}

// taps_outer, cached while the weight is unchanged: ATen's transposing copy took 8-12 us a
// call, a sixth of a 1024x7x7 layer's time.
at::Tensor taps_by_channel(const at::Tensor& weight) {
  return cached_pack(weight, PackedLayout::kDepthwiseTapsByChannel, taps_outer);
}

// f(std::integral_constant<int, I>()) for each I of the sequence.
template <typename F, int... I>
__attribute__((target("avx2,fma"), always_inline)) inline void for_each_index(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>()), ...);
}

// One output pixel (n, oh, ow) of a 3x3 sweep's channels past its whole blocks of eight,
// read in place, with only the taps inside the input (masked loads and stores).
__attribute__((target("avx2,fma"))) void partial_block_pixel(const float* in, const float* w, const float* bias,
                                                              float* out, const ConvGeometry& g, int64_t n,
                                                              int64_t oh, int64_t ow, Span rows, int64_t c) {
  const int64_t channels = g.in_channels;
  const Span cols = window_taps(ow * g.stride_w - g.pad_w, g.kernel_w, g.dilation_w, g.in_w);
  const __m256i mask = first_lanes(channels - c);
  __m256 acc = bias ? _mm256_maskload_ps(bias + c, mask) : _mm256_setzero_ps();
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    const int64_t ih = oh * g.stride_h - g.pad_h + r * g.dilation_h;
    const float* in_row = in + (n * g.in_h + ih) * g.in_w * channels + c;
    for (int64_t s = cols.begin; s < cols.end; ++s) {
      const int64_t iw = ow * g.stride_w - g.pad_w + s * g.dilation_w;
      acc = _mm256_fmadd_ps(_mm256_maskload_ps(in_row + iw * channels, mask),
                            _mm256_maskload_ps(w + (r * g.kernel_w + s) * channels + c, mask), acc);
    }
  }
  _mm256_maskstore_ps(out + ((n * g.out_h + oh) * g.out_w + ow) * channels + c, mask, acc);
}

// Input columns a sweep covers before the next block of channels: one block's lines of
// three rows must stay in L1 for the next block, which with eight channels a block reads
// the other halves of the same lines (one sweep along a whole 112-column row evicted them:
// 15% slower on AVX2; with AVX-512's 16, whole lines, 64 and 128 columns came out even).
constexpr int64_t kSweepColumns = 32;

// The channels_last microkernels of the widest instruction set that may run.
const DepthwiseMicrokernelSet& depthwise_microkernels() {
  return use_avx512() ? kAvx512DepthwiseMicrokernels : kAvx2DepthwiseMicrokernels;
}

// One output row of a 3x3 window with stride 1 or 2 along the row, channels [0,
// full_channels) (whole blocks of eight): segments of the row, each swept by every block of
// channels in turn, blocks of the widest set's vectors first, then, where those leave
// eight channels (AVX-512's 16), one of AVX2's.
void sweep_row(const InputRows& x, const float* w, const float* bias, float* out, const ConvGeometry& g,
               int64_t n, int64_t oh, Span rows, int64_t full_channels) {
  const int64_t channels = g.in_channels, stride = g.stride_w, row_count = rows.end - rows.begin;
  const float* x_rows[3];
  for (int64_t r = 0; r < row_count; ++r) {
    x_rows[r] = x.row(oh * g.stride_h - g.pad_h + (rows.begin + r) * g.dilation_h);
  }
  const float* w_first = w + rows.begin * 3 * channels;
  float* out_row = out + (n * g.out_h + oh) * g.out_w * channels;
  // Outputs whose columns are all inside the input.
  const Span a = valid_outputs(g.in_w, g.out_w, stride, g.pad_w, stride == 1 ? 2 : 1);
  const Span b = valid_outputs(g.in_w, g.out_w, stride, g.pad_w, 2);
  const Span unchecked{std::max(a.begin, b.begin), std::min(a.end, b.end)};
  const DepthwiseMicrokernelSet& wide = depthwise_microkernels();
  const int64_t wide_channels = full_channels / wide.lanes * wide.lanes;
  const ThreeWideSweep wide_sweep = wide.sweep(stride, row_count);
  const DepthwiseMicrokernelSet& narrow = kAvx2DepthwiseMicrokernels;
  const ThreeWideSweep narrow_sweep = narrow.sweep(stride, row_count);
  const int64_t segment = kSweepColumns / stride;
  for (int64_t begin = 0; begin < g.out_w; begin += segment) {
    const int64_t end = std::min(begin + segment, g.out_w);
    for (int64_t c = 0; c < full_channels; c += c < wide_channels ? wide.lanes : narrow.lanes) {
      const float* x_block[3];
      for (int64_t r = 0; r < row_count; ++r) x_block[r] = x_rows[r] + c;
      (c < wide_channels ? wide_sweep : narrow_sweep)(x_block, w_first + c, bias ? bias + c : nullptr,
                                                      x.pixel_stride, channels, g.in_w, g.pad_w, begin, end,
                                                      unchecked, out_row + begin * channels + c);
    }
  }
}

bool sweeps(const ConvGeometry& g) {
  return g.kernel_h == 3 && g.kernel_w == 3 && g.dilation_w == 1 && g.stride_w <= 2;
}

// `x`: image n's rows as the sweeps read them, and for other windows as the pixels kernels
// do (which a row whose window holds no input row, all bias, does not read).
void run_row(const float* in, const InputRows& x, const float* w, const float* bias, float* out,
             const ConvGeometry& g, int64_t n, int64_t oh) {
  const Span rows = window_taps(oh * g.stride_h - g.pad_h, g.kernel_h, g.dilation_h, g.in_h);
  const int64_t channels = g.in_channels, full_channels = channels / kLanes * kLanes;
  if (sweeps(g) && rows.end > rows.begin) {
    sweep_row(x, w, bias, out, g, n, oh, rows, full_channels);
    if (full_channels == channels) return;
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      partial_block_pixel(in, w, bias, out, g, n, oh, ow, rows, full_channels);
    }
    return;
  }
  // Whole vectors of the widest set's channels, then the rest as a partial one.
  float* out_row = out + (n * g.out_h + oh) * g.out_w * channels;
  const DepthwiseMicrokernelSet& set = depthwise_microkernels();
  const int64_t whole_channels = channels / set.lanes * set.lanes;
  const auto pixels = [&](int64_t count, int64_t ow) {
    const PixelsKernel kernel = set.pixels(g, count, false);
    for (int64_t c = 0; c < whole_channels; c += set.lanes) {
      kernel(x, w, bias, out_row + ow * channels, g, oh, ow, rows, c, set.lanes);
    }
    if (whole_channels < channels) {
      set.pixels(g, count, true)(x, w, bias, out_row + ow * channels, g, oh, ow, rows, whole_channels,
                                 static_cast<int>(channels - whole_channels));
    }
  };
  int64_t ow = 0;
  for (; ow + set.most_pixels <= g.out_w; ow += set.most_pixels) pixels(set.most_pixels, ow);
  // The rest of the row in one call, so that its sums are all in flight (MobileNet's 7-wide
  // rows are nothing else).
  if (ow < g.out_w) pixels(g.out_w - ow, ow);
}

// Copies of the input rows a task's output rows read, in a ring of as many rows as a
// window spans (as the output rows move down, each input row is copied once): pixels
// `pixel_stride` floats apart, the lanes past the channels zero, and `pad` zero pixels
// before and after each row.
class CopiedRows {
 public:
  CopiedRows(const ConvGeometry& g, int64_t pad, int64_t pixel_stride)
      : g_(g), ring_((g.kernel_h - 1) * g.dilation_h + 1), pad_(pad), pixel_stride_(pixel_stride),
        row_stride_((g.in_w + 2 * pad) * pixel_stride), held_(ring_, -1),
        rows_(scratch(Scratch::kInput, {ring_ * row_stride_}).data_ptr<float>()) {
    for (int64_t slot = 0; slot < ring_; ++slot) {
      float* row = rows_ + slot * row_stride_;
      std::fill_n(row, pad * pixel_stride, 0.0f);
      std::fill_n(row + (pad + g.in_w) * pixel_stride, pad * pixel_stride, 0.0f);
    }
  }

  // The rows of image n that output row oh reads, copied where not yet held.
  InputRows for_output_row(const float* in, int64_t n, int64_t oh) {
    const int64_t channels = g_.in_channels, lanes = whole_vectors(channels);
    const Span rows = window_taps(oh * g_.stride_h - g_.pad_h, g_.kernel_h, g_.dilation_h, g_.in_h);
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      const int64_t ih = oh * g_.stride_h - g_.pad_h + r * g_.dilation_h, key = n * g_.in_h + ih;
      if (held_[ih % ring_] == key) continue;
      held_[ih % ring_] = key;
      const float* src = in + key * g_.in_w * channels;
      float* dst = rows_ + ih % ring_ * row_stride_ + pad_ * pixel_stride_;
      for (int64_t iw = 0; iw < g_.in_w; ++iw) {
        copy_row(src + iw * channels, channels, dst + iw * pixel_stride_);
        std::fill(dst + iw * pixel_stride_ + channels, dst + iw * pixel_stride_ + lanes, 0.0f);
      }
    }
    return {rows_ + pad_ * pixel_stride_, ring_, row_stride_, pixel_stride_};
  }

 private:
  const ConvGeometry& g_;
  int64_t ring_, pad_, pixel_stride_, row_stride_;
  std::vector<int64_t> held_;  // per slot: n * in_h + the input row it holds, or -1
  float* rows_;
};

// The phase-split scratch of one input plane: `rows` padded rows of `phases` phase rows of
// `length` floats, a whole number of vectors that covers the outputs rounded up to whole
// passes plus the reach of the window.
struct PhasePlane {
  int64_t phases, length, rows;
  int64_t row_floats() const { return phases * length; }
};

constexpr int64_t kColumnsPerPass = 2 * kLanes;

PhasePlane phase_plane(const ConvGeometry& g) {
  const int64_t passes = (g.out_w + kColumnsPerPass - 1) / kColumnsPerPass;
  const int64_t reach = (g.kernel_w - 1) * g.dilation_w / g.stride_w + 1;
  return {g.stride_w, whole_vectors(passes * kColumnsPerPass + reach), g.in_h + 2 * g.pad_h};
}

// The calling thread's phase-split scratch for `rows` padded rows, zeroed, its rows aligned
// to whole vectors. (In a std::vector, 16-byte aligned, MobileNet's 32x112x112 layer ran
// 171 or 188-201 us on one thread, by process: more of the plane kernel's loads split
// across cache lines.)
float* zeroed_phase_rows(const PhasePlane& p, int64_t rows) {
  float* floats = scratch(Scratch::kPhase, {rows * p.row_floats()}).data_ptr<float>();
  std::fill_n(floats, rows * p.row_floats(), 0.0f);
  return floats;
}

// The padded input rows that output rows `out_rows` read.
Span padded_rows_of(const ConvGeometry& g, Span out_rows) {
  return {out_rows.begin * g.stride_h,
          (out_rows.end - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 1};
}

// Output rows computed from one fill of the scratch: as many as keep the rows they read in
// half of L1, so that neither the fill's stores nor the kernel's loads go to L2. (Whole
// planes: MobileNet's 96x112x112 stride-2 layer, one thread, 249-251 against 234-238 us
// in bands, 64x112x112 stride 2 171-174 against 164-170; no change at 56x56 and below,
// whose planes fit.)
int64_t output_rows_per_band(const ConvGeometry& g, const PhasePlane& p) {
  constexpr int64_t kBandBytes = 16 << 10;
  const int64_t row_bytes = p.row_floats() * static_cast<int64_t>(sizeof(float));
  const int64_t rows = kBandBytes / row_bytes - (g.kernel_h - 1) * g.dilation_h;
  return std::max<int64_t>(1, rows / g.stride_h);
}

// Where tap s of output column 0 reads, within a padded scratch row.
std::vector<int64_t> columns_of_taps(const ConvGeometry& g, const PhasePlane& p) {
  std::vector<int64_t> columns(g.kernel_w);
  for (int64_t s = 0; s < g.kernel_w; ++s) {
    const int64_t tap = s * g.dilation_w;
    columns[s] = tap % p.phases * p.length + tap / p.phases;
  }
  return columns;
}

// Copies padded rows of input planes into the phase-split scratch: position x of phase q of
// a padded row holds input column x * phases + q - pad_w, zero outside the row; rows of
// padding are zeroed. The caller zeroes the scratch once; the positions past those written
// are padding and stay zero from fill to fill.
//
// One or two phases go by whole vectors of 8 or 16 columns read straight from the input,
// across the row's ends and masked by AND there, with masked loads only where a vector
// would reach past the plane: per-float tails (a 14-column row is mostly tail), masked
// loads and stores at every row's end and staging the row in a padded line (each load of
// it straddled two stores just made: failed store forwarding) each cost more than the
// convolution.
class PhaseSplitter {
 public:
  PhaseSplitter(const ConvGeometry& g, const PhasePlane& p)
      : g_(g), p_(p),
        // Positions [0, filled) hold columns [-pad, filled * phases - pad).
        filled_(std::min(p.length, whole_vectors((g.in_w + g.pad_w + p.phases - 1) / p.phases))),
        inside_(p.phases <= 2 ? p.phases * filled_ : 0) {
    for (int64_t j = 0; j < static_cast<int64_t>(inside_.size()); ++j) {
      inside_[j] = j >= g.pad_w && j - g.pad_w < g.in_w ? ~0u : 0u;
    }
  }

  // Padded rows `padded_rows` of input plane `in` into scratch rows 0, 1, ...
  __attribute__((target("avx2"))) void fill(const float* in, Span padded_rows, float* scratch) const {
    // Everything in locals: the vector stores may alias anything, so members would be
    // reloaded after each one.
    const int64_t in_w = g_.in_w, in_h = g_.in_h, pad = g_.pad_w, length = p_.length;
    const int64_t phases = p_.phases, filled = filled_, row_floats = p_.row_floats();
    const int64_t vector_columns = phases * kLanes;
    const uint32_t* inside = inside_.data();
    float* out = scratch;
    for (int64_t ih = padded_rows.begin - g_.pad_h; ih < padded_rows.end - g_.pad_h; ++ih, out += row_floats) {
      if (ih < 0 || ih >= in_h) {
        std::fill_n(out, row_floats, 0.0f);
        continue;
      }
      const float* row = in + ih * in_w;
      if (phases > 2) {
        for (int64_t x = 0; x < filled; ++x) {
          for (int64_t q = 0; q < phases; ++q) {
            const int64_t column = x * phases + q - pad;
            if (column >= 0 && column < in_w) out[q * length + x] = row[column];
          }
        }
        continue;
      }
      // Plane floats [ih * in_w - pad, ... + phases * filled): the rows that would read
      // past the plane read through masked loads, which do not fault where masked.
      const bool past_plane = ih * in_w < pad || ih * in_w - pad + phases * filled > in_h * in_w;
      const float* src = row - pad;
      for (int64_t x = 0; x < filled; x += kLanes) {
        const int64_t j = phases * x;
        const bool at_end = j < pad || j + vector_columns > pad + in_w;
        const __m256 a = load_columns(src + j, inside + j, at_end, past_plane);
        if (phases == 1) {
          _mm256_storeu_ps(out + x, a);
          continue;
        }
        const __m256 b = load_columns(src + j + kLanes, inside + j + kLanes, at_end, past_plane);
        // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6], and the same for odds.
        const __m256 even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        const __m256 odd = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm256_storeu_ps(out + x, _mm256_castpd_ps(_mm256_permute4x64_pd(
                                      _mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0))));
        _mm256_storeu_ps(out + length + x, _mm256_castpd_ps(_mm256_permute4x64_pd(
                                               _mm256_castps_pd(odd), _MM_SHUFFLE(3, 1, 2, 0))));
      }
    }
  }

 private:
  // Eight columns from `columns`, zero where `inside` is; at_end: some lanes may be outside
  // the row; past_plane: some may be outside the plane.
  __attribute__((target("avx2"))) static __m256 load_columns(const float* columns, const uint32_t* inside,
                                                             bool at_end, bool past_plane) {
    const __m256i mask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(inside));
    if (past_plane) return _mm256_maskload_ps(columns, mask);
    const __m256 floats = _mm256_loadu_ps(columns);
    return at_end ? _mm256_and_ps(floats, _mm256_castsi256_ps(mask)) : floats;
  }

  const ConvGeometry& g_;
  const PhasePlane& p_;
  int64_t filled_;                // positions past it are padding in every phase
  std::vector<uint32_t> inside_;  // one or two phases: all ones where column j - pad is in the row
};

// Stores one row's kVectors vectors of outputs at `out`: whole vectors where `writable`
// floats (to the end of the output plane) take them, else only the first `writable`.
template <int kVectors>
__attribute__((target("avx2"), always_inline)) inline void store_row_vectors(const __m256 (&acc)[kVectors],
                                                                             float* out, int64_t writable) {
  if (writable >= kVectors * kLanes) {
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) _mm256_storeu_ps(out + v * kLanes, acc[v]);
    return;
  }
  alignas(32) float tail[kColumnsPerPass];
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) _mm256_store_ps(tail + v * kLanes, acc[v]);
  copy_row(tail, writable, out);
}

// kVectors (1 or 2) vectors of outputs of one row, for a compiled 3x3 window whose weights
// are held in registers. `row` is the first scratch row the window covers, at the pass's
// first output column. `writable`: floats from `out` to the end of the output plane; whole
// vectors are stored where they fit, as what they write past the row's end belongs to
// columns of the next row that are written later (a 14-column row would be mostly tail).
template <bool kAdjacentTaps, int kVectors>
__attribute__((target("avx2,fma"))) inline void three_by_three_pass(
    const float* row, int64_t row_step, const int64_t* column_of_tap, const __m256 (&held)[9],
    float bias, float* out, int64_t writable) {
  __m256 acc[kVectors];
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) acc[v] = _mm256_set1_ps(bias);
#pragma GCC unroll 3
  for (int r = 0; r < 3; ++r, row += row_step) {
#pragma GCC unroll 3
    for (int s = 0; s < 3; ++s) {
      const float* x = row + (kAdjacentTaps ? s : column_of_tap[s]);
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v)
        acc[v] = _mm256_fmadd_ps(_mm256_loadu_ps(x + v * kLanes), held[r * 3 + s], acc[v]);
    }
  }
  store_row_vectors<kVectors>(acc, out, writable);
}

// Output rows computed together, at most, by the pass of other windows: 4 x 2 vectors of
// sums, 2 + 2 vectors of input and a weight fill 13 of the 16 registers.
constexpr int kSharedRows = 4;

// Output rows shared_rows_pass computes together for g: as many as at most kSharedRows
// whose windows all reach the kernel rows of every other's (kernel_h >= (rows - 1) *
// stride_h); fewer than 2, none (single_row_pass).
int shared_rows(const ConvGeometry& g) {
  if (g.dilation_h != 1 || g.stride_h > 2) return 0;
  const int64_t rows = std::min<int64_t>(kSharedRows, g.kernel_h / g.stride_h + 1);
  return rows >= 2 ? static_cast<int>(rows) : 0;
}

// acc[i] += the taps of padded input row `xa` (at the pass's first column) for each output
// row i in kReadersA, and those of row `xb` for each in kReadersB, each vector of the rows
// loaded once for all of them; output row i weights row a by the kernel row at
// wa - i * w_step, row b by the one at wb - i * w_step.
template <bool kAdjacentTaps, int kReadersA, int kReadersB, int kRows, int kVectors>
__attribute__((target("avx2,fma"), always_inline)) inline void add_input_rows(
    const float* xa, const float* wa, const float* xb, const float* wb, int64_t w_step,
    const int64_t* column_of_tap, int64_t kernel_w, __m256 (&acc)[kRows][kVectors]) {
#pragma GCC unroll 7
  for (int64_t s = 0; s < kernel_w; ++s) {
    const int64_t column = kAdjacentTaps ? s : column_of_tap[s];
    __m256 a[kVectors], b[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      if (kReadersA != 0) a[v] = _mm256_loadu_ps(xa + column + v * kLanes);
      if (kReadersB != 0) b[v] = _mm256_loadu_ps(xb + column + v * kLanes);
    }
#pragma GCC unroll 4
    for (int i = 0; i < kRows; ++i) {
      if (kReadersA >> i & 1) {
        const __m256 wv = _mm256_broadcast_ss(wa - i * w_step + s);
#pragma GCC unroll 4
        for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm256_fmadd_ps(a[v], wv, acc[i][v]);
      }
      if (kReadersB >> i & 1) {
        const __m256 wv = _mm256_broadcast_ss(wb - i * w_step + s);
#pragma GCC unroll 4
        for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm256_fmadd_ps(b[v], wv, acc[i][v]);
      }
    }
  }
}

// Bits [lo, hi] of a mask.
constexpr int bits(int lo, int hi) { return lo > hi ? 0 : ((2 << hi) - 1) & ~((1 << lo) - 1); }

// kVectors vectors of outputs in each of kRows output rows, for a window read from g with
// kStride rows between output rows, no dilation down the columns and at least
// (kRows - 1) * kStride kernel rows. The pass walks the input rows that the output rows
// read, each input vector loaded serving every output row whose window covers its row: one
// load feeds up to kRows x kVectors FMAs, one into each sum. The rows all output rows read
// come first; then the first and last (kRows - 1) * kStride input rows in pairs (d,
// kernel_h + d), which
// are read by complementary sets of output rows (i <= d / kStride and the others), so every
// sum takes one FMA per tap throughout and their dependent chains run side by side. (Kernel
// row by kernel row, one output row at a time, a 7x7 window took a load and a broadcast per
// FMA, half of them split across cache lines, and its 49 dependent FMAs per vector were
// more than the CPU looks ahead: 54% of the FMA peak on MobileNet's 32x112x112 layer at
// 7x7, one thread; the input rows in order, the last output row's sums started three rows
// after the first's: 66%.) Which output rows read a row is known at compile time, so the
// sums stay in registers. `row`: scratch row 0 of the first output row's window, at the
// pass's first column; `writable` as in three_by_three_pass.
template <int kStride, int kRows, bool kAdjacentTaps, int kVectors>
__attribute__((target("avx2,fma"))) inline void shared_rows_pass(
    const float* row, int64_t row_floats, int64_t kernel_h, const int64_t* column_of_tap, const float* w,
    int64_t kernel_w, float bias, float* out, int64_t out_w, int64_t writable) {
  __m256 acc[kRows][kVectors];
#pragma GCC unroll 4
  for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm256_set1_ps(bias);
  }
  constexpr int kRamp = (kRows - 1) * kStride;
  constexpr int kAll = bits(0, kRows - 1);
  const int64_t w_step = kStride * kernel_w;
  for (int64_t j = kRamp; j < kernel_h; ++j) {
    const float* x = row + j * row_floats;
    add_input_rows<kAdjacentTaps, kAll, 0>(x, w + j * kernel_w, x, w, w_step, column_of_tap, kernel_w, acc);
  }
  for_each_index([&](auto d) __attribute__((target("avx2,fma"), always_inline)) {
    constexpr int kFirst = bits(0, decltype(d)::value / kStride);
    const int64_t j = kernel_h + d;
    add_input_rows<kAdjacentTaps, kFirst, kAll & ~kFirst>(
        row + d * row_floats, w + d * kernel_w, row + j * row_floats, w + j * kernel_w, w_step, column_of_tap,
        kernel_w, acc);
  }, std::make_integer_sequence<int, kRamp>{});
#pragma GCC unroll 4
  for (int i = 0; i < kRows; ++i) store_row_vectors<kVectors>(acc[i], out + i * out_w, writable - i * out_w);
}

// The same for one output row and any window, two kernel rows at a time: the even rows
// into sums 0, the odd ones into sums 1 (with w_step 0 both read the weights given), so
// that twice as many sums are in flight; added at the end.
template <bool kAdjacentTaps, int kVectors>
__attribute__((target("avx2,fma"))) inline void single_row_pass(
    const float* row, int64_t row_step, int64_t kernel_h, const int64_t* column_of_tap, const float* w,
    int64_t kernel_w, float bias, float* out, int64_t writable) {
  __m256 acc[2][kVectors];
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) {
    acc[0][v] = _mm256_set1_ps(bias);
    acc[1][v] = _mm256_setzero_ps();
  }
  int64_t r = 0;
  for (; r + 2 <= kernel_h; r += 2) {
    add_input_rows<kAdjacentTaps, 1, 2>(row + r * row_step, w + r * kernel_w, row + (r + 1) * row_step,
                                                  w + (r + 1) * kernel_w, 0, column_of_tap, kernel_w, acc);
  }
  if (r < kernel_h) {
    const float* x = row + r * row_step;
    add_input_rows<kAdjacentTaps, 1, 0>(x, w + r * kernel_w, x, w, 0, column_of_tap, kernel_w, acc);
  }
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) acc[0][v] = _mm256_add_ps(acc[0][v], acc[1][v]);
  store_row_vectors<kVectors>(acc[0], out, writable);
}

// pass(std::integral_constant<int, vectors>(), ow) over one output row's columns. Passes
// over several rows go kLastPassFirst: the last pass, which may write past the rows' ends,
// first, so that the columns it writes in each next row are written again by that row's
// own passes. One row's passes go in order (the 3x3 kernel's nine weights stayed in
// registers only so: MobileNet's 1024x7x7 layer 42 against 56-60 us, one thread).
template <bool kLastPassFirst, typename Pass>
__attribute__((target("avx2,fma"), always_inline)) inline void over_columns(int64_t out_w, Pass&& pass) {
  int64_t ow = 0;
  if constexpr (kLastPassFirst) {
    const int64_t last = (out_w - 1) / kColumnsPerPass * kColumnsPerPass;
    if (out_w - last > kLanes) {
      pass(std::integral_constant<int, 2>(), last);
    } else {
      pass(std::integral_constant<int, 1>(), last);
    }
    for (; ow < last; ow += kColumnsPerPass) pass(std::integral_constant<int, 2>(), ow);
  } else {
    for (; ow + kLanes < out_w; ow += kColumnsPerPass) pass(std::integral_constant<int, 2>(), ow);
    if (ow < out_w) pass(std::integral_constant<int, 1>(), ow);
  }
}

// Rows `out_rows` of one output plane from the scratch of the padded input rows they read
// (scratch row 0: padded row out_rows.begin * stride_h). kThreeByThree compiles in a 3x3
// window, its weights held in registers; other windows are read from g, shared_rows(g)
// output rows at a time where shared_rows_pass takes them. column_of_tap[s]: where tap s of output
// column 0 reads, within a padded scratch row; kAdjacentTaps: column s (stride and
// dilation 1), so that one register addresses a row's taps (9 row pointers did not fit in
// registers beside the weights: 172-186 against 170-179 us on MobileNet's 32x112x112 layer,
// 189 against 180 on 128x56x56, one thread).
template <bool kThreeByThree, bool kAdjacentTaps>
__attribute__((target("avx2,fma"))) void nchw_plane(const float* scratch, const PhasePlane& p,
                                                    const int64_t* column_of_tap, const float* w,
                                                    float bias, float* out, const ConvGeometry& g,
                                                    Span out_rows) {
  // Geometry in locals: the output stores may alias anything, so it would be reloaded
  // after each one.
  const int64_t width = p.row_floats(), out_h = g.out_h, out_w = g.out_w;
  const int64_t input_row_step = g.stride_h * width, kernel_w = g.kernel_w;
  if constexpr (kThreeByThree) {
    __m256 held[9];
    for (int i = 0; i < 9; ++i) held[i] = _mm256_set1_ps(w[i]);
    int64_t columns[3];
    std::copy_n(column_of_tap, 3, columns);
    const int64_t row_step = g.dilation_h * width;
    for (int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
      const float* row = scratch + (oh - out_rows.begin) * input_row_step;
      float* out_row = out + oh * out_w;
      over_columns<false>(out_w, [&](auto vectors, int64_t ow) __attribute__((target("avx2,fma"), always_inline)) {
        three_by_three_pass<kAdjacentTaps, decltype(vectors)::value>(row + ow, row_step, columns, held, bias,
                                                                   out_row + ow, (out_h - oh) * out_w - ow);
      });
    }
  } else {
    const int64_t kernel_h = g.kernel_h, row_step = g.dilation_h * width;
    const int rows_together = shared_rows(g);
    const int shared = out_rows.end - out_rows.begin >= rows_together ? rows_together : 0;
    if (shared == 0) {
      for (int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
        const float* row = scratch + (oh - out_rows.begin) * input_row_step;
        float* out_row = out + oh * out_w;
        over_columns<false>(out_w, [&](auto vectors, int64_t ow) __attribute__((target("avx2,fma"), always_inline)) {
          single_row_pass<kAdjacentTaps, decltype(vectors)::value>(row + ow, row_step, kernel_h, column_of_tap, w,
                                                                   kernel_w, bias, out_row + ow,
                                                                   (out_h - oh) * out_w - ow);
        });
      }
      return;
    }
    // Groups of `shared` output rows; a last group that would be short ends at the last row
    // instead, computing some rows again (to the same values).
    for (int64_t next = out_rows.begin; next < out_rows.end; next += shared) {
      const int64_t oh = std::min(next, out_rows.end - shared);
      const float* row = scratch + (oh - out_rows.begin) * input_row_step;
      float* out_row = out + oh * out_w;
      const int64_t writable = (out_h - oh) * out_w;
      over_columns<true>(out_w, [&](auto vectors, int64_t ow) __attribute__((target("avx2,fma"), always_inline)) {
        for_each_index([&](auto stride) __attribute__((target("avx2,fma"), always_inline)) {
          for_each_index([&](auto rows) __attribute__((target("avx2,fma"), always_inline)) {
            if (g.stride_h != stride || shared != rows) return;
            shared_rows_pass<stride, rows, kAdjacentTaps, decltype(vectors)::value>(
                row + ow, width, kernel_h, column_of_tap, w, kernel_w, bias, out_row + ow, out_w, writable - ow);
          }, std::integer_sequence<int, 2, 3, kSharedRows>{});
        }, std::integer_sequence<int, 1, 2>{});
      });
    }
  }
}


// out[c] = (kAdd ? out[c] : 0) + a[c] * b[c] for the `channels` channels of a pixel.
template <bool kAdd>
__attribute__((target("avx2,fma"))) inline void multiply_channels(const float* a, const float* b,
                                                                  int64_t channels, float* out) {
  int64_t c = 0;
  for (; c + kLanes <= channels; c += kLanes) {
    const __m256 product = _mm256_mul_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c));
    _mm256_storeu_ps(out + c, kAdd ? _mm256_add_ps(_mm256_loadu_ps(out + c), product) : product);
  }
  if (c == channels) return;
  const __m256i mask = first_lanes(channels - c);
  const __m256 product =
      _mm256_mul_ps(_mm256_maskload_ps(a + c, mask), _mm256_maskload_ps(b + c, mask));
  _mm256_maskstore_ps(out + c, mask,
                      kAdd ? _mm256_add_ps(_mm256_maskload_ps(out + c, mask), product) : product);
}

// Row ih of image n of a channels_last depthwise grad_input (multiplier 1): each pixel the
// sum over its row and column sources of grad_output times the tap's weight, a pixel's
// channels at a time (its first source sets them, the others add). `dy`: the image's
// grad_output; `w`: the weight as taps_outer lays it out.
__attribute__((target("avx2,fma"))) void gather_grad_input_row(const float* dy, const float* w,
                                                               const AxisSources& rows,
                                                               const AxisSources& cols,
                                                               const ConvGeometry& g, int64_t ih,
                                                               float* out_row) {
  const int64_t channels = g.in_channels;
  for (int64_t iw = 0; iw < g.in_w; ++iw) {
    float* out = out_row + iw * channels;
    bool first = true;
    for (const TapSource* r = rows.begin(ih); r != rows.end(ih); ++r) {
      for (const TapSource* c = cols.begin(iw); c != cols.end(iw); ++c) {
        const float* dy_pixel = dy + (r->out * g.out_w + c->out) * channels;
        const float* w_tap = w + (r->tap * g.kernel_w + c->tap) * channels;
        if (first) {
          multiply_channels<false>(dy_pixel, w_tap, channels, out);
        } else {
          multiply_channels<true>(dy_pixel, w_tap, channels, out);
        }
        first = false;
      }
    }
    if (first) std::fill(out, out + channels, 0.0f);
  }
}

// MobileNet's downsampling windows: 3x3 at stride 2 with padding 1, no dilation.
bool is_3x3_stride2(const ConvGeometry& g) {
  return g.kernel_h == 3 && g.kernel_w == 3 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 1 &&
         g.pad_w == 1 && g.dilation_h == 1 && g.dilation_w == 1;
}

// Along each axis of an is_3x3_stride2 grad_input, position 2m takes tap 1 of output m,
// and 2m + 1 takes tap 2 of output m and tap 0 of output m + 1 (where there is one). So the
// grad_output rows that reach input row ih, `count` of them, are out_row[i] through kernel
// row kernel_row[i]; and per such row a, a pair of columns (2m, 2m + 1) adds a[m] w1 and
// a[m] w2 + a[m + 1] w0.
struct ReachingRows {
  int count = 0;
  int64_t out_row[2], kernel_row[2];
  ReachingRows(int64_t ih, int64_t out_h) {
    const int64_t m = ih / 2;
    if (ih % 2 == 0) {
      add(m, 1);
      return;
    }
    add(m, 2);
    if (m + 1 < out_h) add(m + 1, 0);
  }
  void add(int64_t oh, int64_t r) {
    out_row[count] = oh;
    kernel_row[count++] = r;
  }
};

// Row ih of image n of a channels_last depthwise grad_input for is_3x3_stride2 (multiplier
// 1), by the widest set's StrideTwoGradInputRow. `dy`: the image's grad_output; `w`: the
// weight as taps_by_channel lays it out.
void grad_input_3x3_stride2_row(const float* dy, const float* w, const ConvGeometry& g, int64_t ih,
                                float* out_row) {
  const int64_t channels = g.in_channels;
  const ReachingRows reaching(ih, g.out_h);
  const float* rows[2];
  const float* taps[2];
  for (int i = 0; i < reaching.count; ++i) {
    rows[i] = dy + reaching.out_row[i] * g.out_w * channels;
    taps[i] = w + reaching.kernel_row[i] * 3 * channels;
  }
  depthwise_microkernels().stride_two_grad_input_row(rows, taps, reaching.count, channels, g.out_w, g.in_w,
                                                     out_row);
}

// One plane of an NCHW depthwise grad_input for is_3x3_stride2 (multiplier 1): pairs of
// columns as ReachingRows sums them, eight pairs at a time, the even and the odd columns'
// sums interleaved into two vectors. `dy`: the plane's grad_output rows, `row_floats` apart,
// zero from column out_w to at least a vector past the last whole vector; `w`: the plane's
// 3x3 filter.
__attribute__((target("avx2,fma"))) void grad_input_3x3_stride2_plane(const float* dy, int64_t row_floats,
                                                                      const float* w, const ConvGeometry& g,
                                                                      float* out) {
  for (int64_t ih = 0; ih < g.in_h; ++ih) {
    const ReachingRows reaching(ih, g.out_h);
    const float* rows[2];
    __m256 left[2], middle[2], right[2];  // kernel columns 0, 1, 2 of each row's kernel row
    const int count = reaching.count;
    for (int i = 0; i < count; ++i) {
      const float* taps = w + reaching.kernel_row[i] * 3;
      rows[i] = dy + reaching.out_row[i] * row_floats;
      left[i] = _mm256_broadcast_ss(taps);
      middle[i] = _mm256_broadcast_ss(taps + 1);
      right[i] = _mm256_broadcast_ss(taps + 2);
    }
    float* out_row = out + ih * g.in_w;
    for (int64_t q = 0; q < g.out_w; q += kLanes) {
      __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
      for (int i = 0; i < count; ++i) {
        const __m256 here = _mm256_loadu_ps(rows[i] + q), next = _mm256_loadu_ps(rows[i] + q + 1);
        even = _mm256_fmadd_ps(here, middle[i], even);
        odd = _mm256_fmadd_ps(here, right[i], odd);
        odd = _mm256_fmadd_ps(next, left[i], odd);
      }
      // [e0 o0 e1 o1 | e4 o4 e5 o5] and [e2 o2 e3 o3 | e6 o6 e7 o7], then in column order.
      const __m256 low = _mm256_unpacklo_ps(even, odd), high = _mm256_unpackhi_ps(even, odd);
      const __m256 first = _mm256_permute2f128_ps(low, high, 0x20), second = _mm256_permute2f128_ps(low, high, 0x31);
      const __m256 pairs[2] = {first, second};
      store_row_vectors<2>(pairs, out_row + 2 * q, g.in_w - 2 * q);
    }
  }
}

// grad_input_3x3_stride2_plane over every plane, each plane's grad_output first copied into
// rows padded with zeros (reads past a row's end then need no masks).
void grad_input_3x3_stride2_nchw(const at::Tensor& grad_output, const at::Tensor& weight,
                                 const at::Tensor& grad_input, const ConvGeometry& g) {
  const at::Tensor dy = grad_output.contiguous();
  const at::Tensor w = weight.contiguous();
  const float* dyp = dy.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  float* gi = grad_input.mutable_data_ptr<float>();
  const int64_t out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w;
  const int64_t row_floats = whole_vectors(g.out_w) + kLanes;
  at::parallel_for(0, g.batch * g.in_channels, grain_for(in_plane + out_plane), [&](int64_t begin, int64_t end) {
    std::vector<float> rows(g.out_h * row_floats, 0.0f);
    for (int64_t plane = begin; plane < end; ++plane) {
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        copy_row(dyp + plane * out_plane + oh * g.out_w, g.out_w, rows.data() + oh * row_floats);
      }
      grad_input_3x3_stride2_plane(rows.data(), row_floats, wp + plane % g.in_channels * 9, g,
                                   gi + plane * in_plane);
    }
  });
}

// The channels_last forward with the weight as taps_outer lays it out.
void forward_channels_last(const at::Tensor& input, const at::Tensor& w, const at::Tensor& bias,
                           const at::Tensor& output, const ConvGeometry& g) {
  const float* in = input.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  const float* bp = bias.defined() ? bias.const_data_ptr<float>() : nullptr;
  float* out = output.mutable_data_ptr<float>();
  const int64_t row_elements = (g.kernel_h * g.in_w + g.out_w) * g.in_channels;
  // With 256 channels or more by powers of two a pixel is 1, 2 or 4 KB: a sweep's columns
  // share a few L1 sets (all one set at 4 KB) and evict each other before the next block
  // of channels reads their other halves, and where the input sits at the output's
  // address modulo the pixel, every load lands on the 4 KB page offset of a store just
  // issued, which the CPU holds it for (4K aliasing). The sweeps then read copies of the
  // rows with pixels one cache line further apart. One thread, over every placement of the
  // input: 256x28x28 86 us (77, or 148 aliased, read in place), 512x14x14 48 (64, or
  // 89-113), 1024x7x7 32 (37-40, or 54-71). The output keeps its 1 KB pixels: 248 channels
  // take 60 us. Other windows always read copies, padded for the pixels kernels.
  const int64_t pixel_bytes = g.in_channels * static_cast<int64_t>(sizeof(float));
  const bool aliased = std::gcd(pixel_bytes, int64_t{4096}) >= 1024;
  const bool copied = !sweeps(g) || aliased;
  const int64_t pixel_stride =
      whole_vectors(g.in_channels) + (aliased ? 64 / sizeof(float) : 0);
  at::parallel_for(0, g.batch * g.out_h, grain_for(row_elements), [&](int64_t begin, int64_t end) {
    std::optional<CopiedRows> copies;
    if (copied) copies.emplace(g, sweeps(g) ? 0 : g.pad_w, pixel_stride);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / g.out_h, oh = row % g.out_h;
      const InputRows x = copies ? copies->for_output_row(in, n, oh)
                                 : InputRows{in + n * g.in_h * g.in_w * g.in_channels, g.in_h,
                                             g.in_w * g.in_channels, g.in_channels};
      run_row(in, x, wp, bp, out, g, n, oh);
    }
  });
}

}  // namespace

void depthwise_conv2d_forward_nchw_avx2(const at::Tensor& input, const at::Tensor& weight,
                                        const at::Tensor& bias, const at::Tensor& output,
                                        const ConvGeometry& g) {
  const float* in = input.const_data_ptr<float>();
  const float* wp = weight.const_data_ptr<float>();
  const float* bp = bias.defined() ? bias.const_data_ptr<float>() : nullptr;
  float* out = output.mutable_data_ptr<float>();
  const PhasePlane p = phase_plane(g);
  const int64_t multiplier = g.out_channels_per_group(), taps = g.kernel_h * g.kernel_w;
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const bool three_by_three = g.kernel_h == 3 && g.kernel_w == 3;
  const std::vector<int64_t> column_of_tap = columns_of_taps(g, p);
  const bool adjacent = p.phases == 1 && g.dilation_w == 1;
  const auto run_plane = three_by_three ? (adjacent ? nchw_plane<true, true> : nchw_plane<true, false>)
                                        : (adjacent ? nchw_plane<false, true> : nchw_plane<false, false>);
  const PhaseSplitter splitter(g, p);
  int64_t band = output_rows_per_band(g, p);
  const int group = three_by_three ? 0 : shared_rows(g);
  if (group > 0 && band > group) band -= band % group;  // whole groups of rows
  const Span first_band = padded_rows_of(g, {0, std::min(band, g.out_h)});
  at::parallel_for(0, g.batch * g.in_channels, grain_for(in_plane + multiplier * out_plane),
                   [&](int64_t begin, int64_t end) {
    float* const scratch = zeroed_phase_rows(p, first_band.end - first_band.begin);
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / g.in_channels, c = plane % g.in_channels;
      for (int64_t first = 0; first < g.out_h; first += band) {
        const Span out_rows{first, std::min(first + band, g.out_h)};
        splitter.fill(in + plane * in_plane, padded_rows_of(g, out_rows), scratch);
        for (int64_t k = c * multiplier; k < (c + 1) * multiplier; ++k) {
          const float bias_k = bp ? bp[k] : 0.0f;
          float* out_k = out + (n * g.out_channels + k) * out_plane;
          const float* w_k = wp + k * taps;
          run_plane(scratch, p, column_of_tap.data(), w_k, bias_k, out_k, g, out_rows);
        }
      }
    }
  });
}

void depthwise_conv2d_grad_weight_nchw_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                            const at::Tensor& grad_weight, const ConvGeometry& g) {
  // Per input channel (so no two tasks write one filter): its planes, one image at a time,
  // into the same phase-split scratch as the forward pass; then for each filter tap the dot
  // product of grad_output with the input under the tap, nine taps per sweep.
  const float* gy = grad_output.const_data_ptr<float>();
  const float* in = input.const_data_ptr<float>();
  float* gw = grad_weight.mutable_data_ptr<float>();
  const PhasePlane p = phase_plane(g);
  const int64_t multiplier = g.out_channels_per_group(), taps = g.kernel_h * g.kernel_w;
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const std::vector<int64_t> column_of_tap = columns_of_taps(g, p);
  const PhaseSplitter splitter(g, p);
  const int64_t width = p.row_floats();
  // The widest vectors unless they leave a larger share of each row's lanes empty: the
  // grad_weight sweeps are bound by loads, whose bytes per cycle AVX-512 does not raise on
  // every CPU (Zen 5), and at 7 or 56 columns (7 of 16 lanes, or 56 of 64) AVX-512 ran at
  // 0.8-1.0x of AVX2's speed; at 14, 28 and 112 1.1-1.35x.
  const auto filled = [&](const DepthwiseMicrokernelSet& s) {
    const int64_t lanes = (g.out_w + s.lanes - 1) / s.lanes * s.lanes;
    return static_cast<double>(g.out_w) / lanes;
  };
  const DepthwiseMicrokernelSet& widest = depthwise_microkernels();
  const DepthwiseMicrokernelSet& set = filled(widest) >= filled(kAvx2DepthwiseMicrokernels)
                                           ? widest
                                           : kAvx2DepthwiseMicrokernels;
  constexpr int64_t kTapsPerSweep = DepthwiseMicrokernelSet::kMostPlaneTaps;
  // Scratch position of tap (r, s) for output (0, 0), taps row-major like the weight.
  std::vector<int64_t> tap_offsets;
  for (int64_t r = 0; r < g.kernel_h; ++r) {
    for (int64_t s = 0; s < g.kernel_w; ++s) tap_offsets.push_back(r * g.dilation_h * width + column_of_tap[s]);
  }
  at::parallel_for(0, g.in_channels, grain_for(g.batch * (in_plane + multiplier * out_plane)),
                   [&](int64_t begin, int64_t end) {
    float* const scratch = zeroed_phase_rows(p, p.rows);
    for (int64_t c = begin; c < end; ++c) {
      std::fill_n(gw + c * multiplier * taps, multiplier * taps, 0.0f);
      for (int64_t n = 0; n < g.batch; ++n) {
        splitter.fill(in + (n * g.in_channels + c) * in_plane, {0, p.rows}, scratch);
        for (int64_t k = c * multiplier; k < (c + 1) * multiplier; ++k) {
          const float* gy_k = gy + (n * g.out_channels + k) * out_plane;
          for (int64_t t0 = 0; t0 < taps; t0 += kTapsPerSweep) {
            const int64_t count = std::min<int64_t>(kTapsPerSweep, taps - t0);
            set.plane_tap_gradients[count - 1](gy_k, scratch, tap_offsets.data() + t0, g.stride_h * width,
                                               g.out_h, g.out_w, gw + k * taps + t0);
          }
        }
      }
    }
  });
}

void depthwise_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& grad_weight, const ConvGeometry& g) {
  // A thread takes a range of blocks of channels (a vector's lanes; so no two write one
  // filter) and sweeps the rows once for all of them: for each output row, each block of the
  // range passes along it over a tile of the taps whose kernel rows lie inside the input
  // (tap_gradients; a 3x3 window's nine sums in one pass), the blocks reading neighbouring
  // parts of the same cache lines in turn. (A sweep of the whole image per block:
  // MobileNet's 32x112x112 layer 0.19 against 0.17 ms on one thread, AVX2; segments of 32
  // columns swept by every block in turn, 0.17-0.18 against 0.17.) One vector of sums per
  // tap and block, spread over the filters' lanes at the end.
  TORCH_INTERNAL_ASSERT(g.out_channels == g.in_channels);
  const DepthwiseMicrokernelSet& set = depthwise_microkernels();
  const int64_t lanes = set.lanes;
  const float* gy = grad_output.const_data_ptr<float>();
  const float* in = input.const_data_ptr<float>();
  float* gw = grad_weight.mutable_data_ptr<float>();
  const int64_t channels = g.in_channels, taps = g.kernel_h * g.kernel_w;
  const int64_t blocks = (channels + lanes - 1) / lanes;
  const int64_t block_elements = g.batch * (g.in_h * g.in_w + g.out_h * g.out_w) * lanes;
  at::parallel_for(0, blocks, grain_for(block_elements), [&](int64_t begin, int64_t end) {
    std::vector<float> sums((end - begin) * taps * lanes, 0.0f);
    for (int64_t row = 0; row < g.batch * g.out_h; ++row) {
      const int64_t n = row / g.out_h, oh = row % g.out_h;
      const int64_t ih0 = oh * g.stride_h - g.pad_h;
      const Span rows = window_taps(ih0, g.kernel_h, g.dilation_h, g.in_h);
      for (int64_t block = begin; block < end; ++block) {
        const int64_t c0 = block * lanes;
        const int block_lanes = static_cast<int>(std::min(lanes, channels - c0));
        float* block_sums = sums.data() + (block - begin) * taps * lanes;
        for (int64_t r0 = rows.begin; r0 < rows.end; r0 += set.tile_rows) {
          const int64_t row_count = std::min<int64_t>(set.tile_rows, rows.end - r0);
          for (int64_t s0 = 0; s0 < g.kernel_w; s0 += set.tile_taps) {
            const int64_t tap_count = std::min<int64_t>(set.tile_taps, g.kernel_w - s0);
            const TapGradientRows at{
                gy + row * g.out_w * channels + c0,
                in + ((n * g.in_h + ih0 + r0 * g.dilation_h) * g.in_w) * channels + c0,
                g.dilation_h * g.in_w * channels, block_sums + (r0 * g.kernel_w + s0) * lanes,
                g.kernel_w * lanes};
            set.tap_gradients(row_count, tap_count, block_lanes)(at, g, s0, block_lanes);
          }
        }
      }
    }
    for (int64_t block = begin; block < end; ++block) {
      const int64_t c0 = block * lanes;
      const float* block_sums = sums.data() + (block - begin) * taps * lanes;
      for (int64_t lane = 0; lane < std::min(lanes, channels - c0); ++lane) {
        for (int64_t t = 0; t < taps; ++t) gw[(c0 + lane) * taps + t] = block_sums[t * lanes + lane];
      }
    }
  });
}

bool depthwise_conv2d_grad_input_avx2(const at::Tensor& grad_output, const at::Tensor& weight,
                                      const at::Tensor& grad_input, const ConvGeometry& g) {
  // With one filter per channel, swapping channel axes changes nothing: grad_input is the
  // depthwise forward convolution of the spread grad_output with the flipped filters, by
  // the NCHW or the channels_last kernel as grad_input lies. (By stride phase instead, as
  // the dense kernels do, measured slower over NCHW: depthwise work is a few memory passes,
  // and four phases add passes the spread's multiplies do not cost.) MobileNet's 3x3
  // stride-2 windows have kernels of their own, which read grad_output as it is: over NCHW
  // the spread and its forward took 0.39 against 0.11 ms for the 64x112x112 layer, one
  // thread.
  if (g.out_channels != g.in_channels) return false;
  const bool applies = grad_input_as_forward_applies(g);
  const ConvGeometry t = stride1_grad_input_as_forward(with_unit_stride(g));
  if (grad_input.is_contiguous()) {
    if (is_3x3_stride2(g)) {
      grad_input_3x3_stride2_nchw(grad_output, weight, grad_input, g);
      return true;
    }
    if (!applies) return false;
    depthwise_conv2d_forward_nchw_avx2(
        spread_by_stride(grad_output, g, at::MemoryFormat::Contiguous),
        weight.flip({2, 3}).contiguous(), at::Tensor(), grad_input, t);
    return true;
  }
  // channels_last: with stride 1, the forward kernel's row sweeps over grad_output as it
  // lies; 3x3 windows at stride 2 by grad_input_3x3_stride2_row; otherwise each grad_input
  // pixel gathers the few outputs that read it, where a spread grad_output four times the
  // size, zeroed and filled by a strided copy, took 1.1 ms for MobileNet's 64x112x112 layer
  // against 0.1 native.
  const at::Tensor dy = grad_output.contiguous(at::MemoryFormat::ChannelsLast);
  if (applies && g.stride_h == 1 && g.stride_w == 1) {
    forward_channels_last(dy, taps_outer(weight.flip({2, 3})), at::Tensor(), grad_input, t);
    return true;
  }
  const AxisSources rows(g.in_h, g.out_h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h);
  const AxisSources cols(g.in_w, g.out_w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
  const float* gy = dy.const_data_ptr<float>();
  const float* w = taps_by_channel(weight).const_data_ptr<float>();
  float* gi = grad_input.mutable_data_ptr<float>();
  const int64_t channels = g.in_channels;
  const bool stride2 = is_3x3_stride2(g);
  at::parallel_for(0, g.batch * g.in_h, grain_for(2 * g.in_w * channels),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t row = begin; row < end; ++row) {
                       const int64_t n = row / g.in_h, ih = row % g.in_h;
                       const float* image = gy + n * g.out_h * g.out_w * channels;
                       float* out_row = gi + row * g.in_w * channels;
                       if (stride2) {
                         grad_input_3x3_stride2_row(image, w, g, ih, out_row);
                       } else {
                         gather_grad_input_row(image, w, rows, cols, g, ih, out_row);
                       }
                     }
                   });
  return true;
}

void depthwise_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& output,
                                   const ConvGeometry& g) {
  forward_channels_last(input, taps_by_channel(weight), bias, output, g);
}

}  // namespace classic_ops::cpu
