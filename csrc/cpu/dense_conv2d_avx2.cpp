// Dense float32 convolution on AVX2/FMA, in the style of oneDNN's AVX2 direct kernel: one
// microkernel holds a register tile of up to 6 "pixels" x 16 lanes (12 ymm accumulators)
// and, per reduction step, loads two lane vectors and broadcasts one value per pixel
// against them. It runs in two orientations:
// - channels_last rows (forward_dense): pixels along an output row, lanes 16 output
//   channels of a weight repacked into blocks of 8 (cached while the weight is unchanged);
//   any kernel size, stride, dilation and padding.
// - NCHW planes (planar_conv): pixels 6 output channels broadcast from the weight where
//   it lies, lanes 16 pixels of a padded plane; stride 1, with strided convolutions and
//   grad_input split by stride phase (grad_input_as_forward.h).
// grad_weight runs it with output channels broadcast and input channels as lanes; the 1x1
// grad_weight over large planes uses dot-product tiles instead.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "../grad_input_as_forward.h"
#include "avx2_vectors.h"
#include "kernels.h"
#include "weight_cache.h"

namespace classic_ops::cpu {
namespace {

constexpr int64_t kLanes = 8;       // output channels per ymm register: one channel block
constexpr int kTilePixels = 6;      // output pixels along a row per microkernel call
constexpr int kTileBlocks = 2;      // channel blocks per microkernel call
constexpr int kPackedLayout = 1;    // weight cache tag of the (K/8, R, S, C, 8) layout

// The weight as the microkernel reads it, (K, C, R, S) -> (ceil(K / 8), R, S, C, 8), output
// channels past K zero. With `for_grad_input`, the weight of the forward convolution that
// computes grad_input (stride1_grad_input_as_forward): channels swapped and taps flipped,
// (C, K, R, S) -> (ceil(C / 8), R, S, K, 8). One pass over the weight either way: backward
// packs on every call, and a large layer's weight (512x512x3x3: 9 MB) costs as much to
// move as its convolution of a 7x7 plane.
at::Tensor pack_weight(const at::Tensor& weight, bool for_grad_input) {
  const int64_t k = weight.size(0), c = weight.size(1), taps = weight.size(2) * weight.size(3);
  const int64_t out_ch = for_grad_input ? c : k, in_ch = for_grad_input ? k : c;
  const int64_t blocks = (out_ch + kLanes - 1) / kLanes;
  at::Tensor packed = at::empty({blocks, weight.size(2), weight.size(3), in_ch, kLanes}, weight.options());
  const float* w = weight.const_data_ptr<float>();
  float* dst = packed.mutable_data_ptr<float>();
  // Where output channel o, input channel i, tap t (row-major over R, S) of the convolution
  // the packed weight serves sits in `weight`; the flipped taps run backwards.
  const int64_t o_step = for_grad_input ? taps : c * taps, i_step = for_grad_input ? c * taps : taps;
  const int64_t t_first = for_grad_input ? taps - 1 : 0, t_step = for_grad_input ? -1 : 1;
  at::parallel_for(0, blocks * in_ch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task / in_ch, i = task % in_ch;
      const int64_t lanes = std::min(kLanes, out_ch - block * kLanes);
      const float* src = w + block * kLanes * o_step + i * i_step + t_first;
      float* out = dst + (block * taps * in_ch + i) * kLanes;
      for (int64_t t = 0; t < taps; ++t, src += t_step, out += in_ch * kLanes) {
        int64_t lane = 0;
        for (; lane < lanes; ++lane) out[lane] = src[lane * o_step];
        for (; lane < kLanes; ++lane) out[lane] = 0.0f;
      }
    }
  });
  return packed;
}

// out[i][j] (+)= sum over q < n of a[i * a_row + q] * b[j * b_row + q], for the I x J tile of
// rows of a and b: reductions along rows contiguous in both operands (a 1x1 grad_weight
// over NCHW planes) need neither operand transposed. 12 accumulators; a partial last vector
// is read with maskload (no reads past the rows).
template <int I, int J>
__attribute__((target("avx2,fma"))) void dot_tile(const float* a, int64_t a_row, const float* b,
                                                  int64_t b_row, int64_t n, float* out,
                                                  int64_t out_row) {
  __m256 acc[I][J];
#pragma GCC unroll 4
  for (int i = 0; i < I; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  int64_t q = 0;
  for (; q + kLanes <= n; q += kLanes) {
    __m256 av[I];
#pragma GCC unroll 4
    for (int i = 0; i < I; ++i) av[i] = _mm256_loadu_ps(a + i * a_row + q);
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) {
      const __m256 bv = _mm256_loadu_ps(b + j * b_row + q);
#pragma GCC unroll 4
      for (int i = 0; i < I; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
    }
  }
  if (q < n) {
    const __m256i mask = first_lanes(n - q);
    __m256 av[I];
#pragma GCC unroll 4
    for (int i = 0; i < I; ++i) av[i] = _mm256_maskload_ps(a + i * a_row + q, mask);
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) {
      const __m256 bv = _mm256_maskload_ps(b + j * b_row + q, mask);
#pragma GCC unroll 4
      for (int i = 0; i < I; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < I; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < J; ++j) {
      out[i * out_row + j] += sum_lanes(acc[i][j]);
    }
  }
}

constexpr int kDotRows = 3, kDotCols = 4;  // 12 accumulators, 3 + 1 operand registers
using DotTile = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);

template <int I, int... J>
constexpr std::array<DotTile, sizeof...(J)> dot_tiles_for(std::integer_sequence<int, J...>) {
  return {dot_tile<I, J + 1>...};
}

// kDotTiles[i - 1][j - 1]: the tile of i rows of a and j rows of b.
const std::array<DotTile, kDotCols> kDotTiles[kDotRows] = {
    dot_tiles_for<1>(std::make_integer_sequence<int, kDotCols>{}),
    dot_tiles_for<2>(std::make_integer_sequence<int, kDotCols>{}),
    dot_tiles_for<3>(std::make_integer_sequence<int, kDotCols>{}),
};

// grad_weight (K, C, R, S) from the microkernel's sums: (R, S, K, C), or (R, S, C, K) with
// `channels_outer`. Per output channel, a transpose of R*S rows (a permuting copy of a large
// layer's 9 MB strides badly and cost more than the products).
void unpack_tap_sums(const at::Tensor& sums, bool channels_outer, const at::Tensor& grad_weight) {
  const int64_t k = grad_weight.size(0), c = grad_weight.size(1);
  const int64_t taps = grad_weight.size(2) * grad_weight.size(3);
  const int64_t k_step = channels_outer ? 1 : c, c_step = channels_outer ? k : 1;
  const float* src = sums.const_data_ptr<float>();
  float* dst = grad_weight.mutable_data_ptr<float>();
  at::parallel_for(0, k, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t i = 0; i < c; ++i) {
        for (int64_t t = 0; t < taps; ++t) dst[(o * c + i) * taps + t] = src[t * k * c + o * k_step + i * c_step];
      }
    }
  });
}

// Where the microkernel reads and writes, in floats. The tile is P "pixels" (broadcast
// operands of x) by B blocks of 8 lanes (vector operands of w), reduced over `depth` steps
// and the kernel taps.
struct TileSteps {
  int64_t pixel;      // x: from one tile pixel to the next
  int64_t tap_row;    // x: from one kernel row to the next
  int64_t tap_col;    // x: from one kernel column to the next
  int64_t x_step;     // x: per reduction step
  int64_t block;      // w: from one lane block to the next
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

// acc[p][b] += x[p * pixel] * w[b * block] for one tap and reduction step.
template <int P, int B>
__attribute__((target("avx2,fma"), always_inline)) inline void multiply_step(
    __m256 (&acc)[P][B], const float* x, const float* w, int64_t pixel, int64_t block) {
  __m256 wv[B];
#pragma GCC unroll 2
  for (int b = 0; b < B; ++b) wv[b] = _mm256_loadu_ps(w + b * block);
#pragma GCC unroll 6
  for (int p = 0; p < P; ++p) {
    const __m256 xv = _mm256_broadcast_ss(x + p * pixel);
#pragma GCC unroll 2
    for (int b = 0; b < B; ++b) acc[p][b] = _mm256_fmadd_ps(xv, wv[b], acc[p][b]);
  }
}

// y[p][b] = init + sum over taps and reduction steps of x * w, where init is `bias` (one
// vector per block, or with st.bias_per_pixel one value per pixel) or, when bias is null,
// y itself (accumulation). The last block holds
// `last_block_lanes` valid lanes: masked loads and stores keep inside them. (Vector values
// never cross the boundary to code compiled without AVX: its ABI differs.)
template <int P, int B>
__attribute__((target("avx2,fma"))) void microkernel(const float* x, const float* w,
                                                     const float* bias, float* y,
                                                     const TileSteps& st, int last_block_lanes) {
  const __m256i store_mask = first_lanes(last_block_lanes);
  __m256 acc[P][B];
#pragma GCC unroll 2
  for (int b = 0; b < B; ++b) {
    const bool masked = b == B - 1 && last_block_lanes != kLanes;
#pragma GCC unroll 6
    for (int p = 0; p < P; ++p) {
      if (bias && st.bias_per_pixel) {
        acc[p][b] = _mm256_broadcast_ss(bias + p);
        continue;
      }
      const float* init = bias ? bias + b * kLanes : y + p * st.out_pixel + b * kLanes;
      acc[p][b] = masked && !bias ? _mm256_maskload_ps(init, store_mask) : _mm256_loadu_ps(init);
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
          multiply_step<P, B>(acc, x + r * tap_row + s * tap_col, w + r * w_tap_row + s * w_tap_col,
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
          multiply_step<P, B>(acc, xs, ws, pixel, block);
        }
      }
    }
  }
#pragma GCC unroll 6
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 2
    for (int b = 0; b < B; ++b) {
      float* out = y + p * st.out_pixel + b * kLanes;
      if (b == B - 1 && last_block_lanes != kLanes) {
        _mm256_maskstore_ps(out, store_mask, acc[p][b]);
      } else {
        _mm256_storeu_ps(out, acc[p][b]);
      }
    }
  }
}

using Microkernel = void (*)(const float*, const float*, const float*, float*, const TileSteps&,
                             int);

template <int B, int... P>
constexpr std::array<Microkernel, sizeof...(P)> microkernels_for(std::integer_sequence<int, P...>) {
  return {microkernel<P + 1, B>...};
}

// kMicrokernels[b - 1][p - 1]: the tile of p pixels and b channel blocks.
const std::array<Microkernel, kTilePixels> kMicrokernels[kTileBlocks] = {
    microkernels_for<1>(std::make_integer_sequence<int, kTilePixels>{}),
    microkernels_for<2>(std::make_integer_sequence<int, kTilePixels>{}),
};

// The input as NHWC with the padding materialized, so the microkernel needs no bounds checks,
// followed by `slack` readable floats (for vector loads of a partial channel block).
at::Tensor padded_nhwc(const at::Tensor& input, const ConvGeometry& g, int64_t slack = 0) {
  const at::Tensor nhwc = input.permute({0, 2, 3, 1});
  const bool padded = g.pad_h != 0 || g.pad_w != 0;
  if (!padded && slack == 0) return nhwc.contiguous();
  const int64_t h = g.in_h + 2 * g.pad_h, w = g.in_w + 2 * g.pad_w;
  const int64_t count = g.batch * h * w * g.in_channels;
  const at::Tensor buffer = padded ? at::zeros({count + slack}, input.options())
                                   : at::empty({count + slack}, input.options());
  at::Tensor x = buffer.narrow(0, 0, count).view({g.batch, h, w, g.in_channels});
  x.narrow(1, g.pad_h, g.in_h).narrow(2, g.pad_w, g.in_w).copy_(nhwc);
  return x;
}

// `packed` is the weight of this convolution as pack_weight lays it out.
void forward_dense(const at::Tensor& input, const at::Tensor& packed, const at::Tensor& bias,
                   const at::Tensor& output, const ConvGeometry& g) {
  const at::Tensor x = padded_nhwc(input, g);
  const int64_t blocks = packed.size(0);
  at::Tensor bias_padded = at::zeros({blocks * kLanes}, packed.options());
  if (bias.defined()) bias_padded.narrow(0, 0, g.out_channels).copy_(bias);

  const int64_t padded_h = g.in_h + 2 * g.pad_h, padded_w = g.in_w + 2 * g.pad_w;
  const int64_t c = g.in_channels;
  const TileSteps st{/*pixel=*/g.stride_w * c, /*tap_row=*/g.dilation_h * padded_w * c,
                     /*tap_col=*/g.dilation_w * c, /*x_step=*/1,
                     /*block=*/g.kernel_h * g.kernel_w * c * kLanes,
                     /*w_tap_row=*/g.kernel_w * c * kLanes, /*w_tap_col=*/c * kLanes,
                     /*w_step=*/kLanes, /*out_pixel=*/g.out_channels, g.kernel_h, g.kernel_w,
                     /*depth=*/c};
  const int last_lanes = static_cast<int>(g.out_channels - (blocks - 1) * kLanes);
  const int64_t block_pairs = (blocks + kTileBlocks - 1) / kTileBlocks;
  const int64_t rows = g.batch * g.out_h;
  // A row in as few tiles as 6 pixels allow, of sizes that differ by one at most, not 6s
  // and a remainder: a tile of 2 pixels x 2 blocks has 4 chains of dependent FMAs, too few
  // to cover their latency (14 pixels as 6 + 6 + 2: the 2 took a third as long as the 6s).
  const int64_t row_tiles = (g.out_w + kTilePixels - 1) / kTilePixels;
  const int64_t tile_pixels = g.out_w / row_tiles, wider_tiles = g.out_w % row_tiles;

  const float* xp = x.const_data_ptr<float>();
  const float* wp = packed.const_data_ptr<float>();
  const float* bp = bias_padded.const_data_ptr<float>();
  float* yp = output.mutable_data_ptr<float>();  // channels_last: NHWC in memory

  // Tasks run channel-block-major, so one thread's consecutive tasks reuse a weight panel.
  at::parallel_for(0, block_pairs * rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t pair = task / rows, row = task % rows;
      const int64_t n = row / g.out_h, oh = row % g.out_h;
      const int64_t block0 = pair * kTileBlocks;
      const int nblocks = static_cast<int>(std::min<int64_t>(kTileBlocks, blocks - block0));
      const int tile_last_lanes = block0 + nblocks == blocks ? last_lanes : static_cast<int>(kLanes);
      const float* x_row = xp + ((n * padded_h + oh * g.stride_h) * padded_w) * c;
      float* y_row = yp + ((n * g.out_h + oh) * g.out_w) * g.out_channels + block0 * kLanes;
      const float* w_blocks = wp + block0 * st.block;
      int64_t ow = 0;
      for (int64_t tile = 0; tile < row_tiles; ++tile) {
        const int pixels = static_cast<int>(tile_pixels + (tile < wider_tiles));
        kMicrokernels[nblocks - 1][pixels - 1](x_row + ow * st.pixel, w_blocks,
                                               bp + block0 * kLanes, y_row + ow * g.out_channels,
                                               st, tile_last_lanes);
        ow += pixels;
      }
    }
  });
}

// Stride-1 convolution over NCHW planes with the pixels of a plane as lanes: the NCHW
// counterpart of forward_dense (which has channels as lanes), with no transposes and no
// weight repacking, as the weight is broadcast from wherever its coefficients lie. The
// input planes are zero-padded and flattened with their padded row width, so every tap is
// one constant offset; each output row then carries (padded width - out_w) columns of
// garbage, computed and dropped.
struct PlanarWeight {
  const float* base;  // coefficient (o, i, r, s) at base + o * out + i * in + r * row + s * col
  int64_t out, in, row, col;
};

// Floats a tile may read past the last padded plane: the garbage columns of the last row
// reach (kernel_w - 1) * dilation_w past it, a partial last lane block 7 more.
int64_t planar_slack(const ConvGeometry& t) { return (t.kernel_w - 1) * t.dilation_w + kLanes; }

// y (N, O, out_h, padded row width) = init + conv(planes, weight) for stride-1 geometry t,
// where init is `bias` (O values) or, when bias is null, y itself (accumulation), and
// planes (N, I, in_h + 2 pad_h, in_w + 2 pad_w) hold the padded input, followed by
// planar_slack(t) readable floats; output columns past out_w come out as garbage.
void planar_accumulate(const at::Tensor& planes, const PlanarWeight& w, const ConvGeometry& t,
                       const float* bias, const at::Tensor& y) {
  const int64_t padded_w = planes.size(3), in_plane = planes.size(2) * padded_w;
  const int64_t o_count = t.out_channels, i_count = t.in_channels;
  const int64_t positions = t.out_h * padded_w;
  const TileSteps st{/*pixel=*/w.out, /*tap_row=*/w.row, /*tap_col=*/w.col, /*x_step=*/w.in,
                     /*block=*/kLanes, /*w_tap_row=*/t.dilation_h * padded_w,
                     /*w_tap_col=*/t.dilation_w, /*w_step=*/in_plane, /*out_pixel=*/positions,
                     t.kernel_h, t.kernel_w, /*depth=*/i_count,
                     /*depth_outer=*/t.kernel_h * t.kernel_w > 1, /*bias_per_pixel=*/true};
  // Positions per task: at most about 512 KB of input rows (half a 1 MB L2), shared by the
  // channel tiles that follow each other in a thread, in chunks of equal size (threads
  // take runs of tasks: a short last chunk left one thread idle). Each chunk sweeps the
  // whole weight, which for a large layer comes from L3: 128 KB chunks swept a stride-2
  // grad_input's 1.2 MB weight twice per phase.
  const int64_t pixel_step = kTileBlocks * kLanes;
  const int64_t most = std::max<int64_t>(pixel_step, (int64_t{128} << 10) / i_count / pixel_step * pixel_step);
  const int64_t chunks = (positions + most - 1) / most;
  const int64_t chunk = ((positions + chunks - 1) / chunks + pixel_step - 1) / pixel_step * pixel_step;
  const int64_t channel_tiles = (o_count + kTilePixels - 1) / kTilePixels;
  const float* xp = planes.const_data_ptr<float>();
  float* yp = y.mutable_data_ptr<float>();
  // Without taps (1x1), a thread copies its chunk once into a panel, each 16-position block
  // as i_count rows of 16 floats: read in place, every reduction step would start a new
  // cache line of another plane.
  const bool packed = t.kernel_h * t.kernel_w == 1;
  TileSteps panel_st = st;
  panel_st.w_step = pixel_step;
  at::parallel_for(0, t.batch * chunks * channel_tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> panel(packed ? chunk * i_count : 0);
    int64_t panel_of = -1;  // the (image, chunk) in the panel
    for (int64_t task = begin; task < end; ++task) {
      const int64_t o0 = task % channel_tiles * kTilePixels;
      const int64_t n = task / (channel_tiles * chunks), first = task / channel_tiles % chunks * chunk;
      const int64_t last = std::min(positions, first + chunk);
      const float* x = xp + n * i_count * in_plane;
      if (packed && panel_of != task / channel_tiles) {
        for (int64_t p0 = first; p0 < last; p0 += pixel_step) {
          // Lanes past the last position keep stale values; their results are not stored.
          const int64_t length = std::min(pixel_step, positions - p0);
          float* block = panel.data() + (p0 - first) * i_count;
          for (int64_t i = 0; i < i_count; ++i) copy_row(x + i * in_plane + p0, length, block + i * pixel_step);
        }
        panel_of = task / channel_tiles;
      }
      const int rows = static_cast<int>(std::min<int64_t>(kTilePixels, o_count - o0));
      for (int64_t p0 = first; p0 < last; p0 += pixel_step) {
        const int64_t left = positions - p0;
        const int nblocks = left > kLanes ? 2 : 1;
        const int last_lanes = static_cast<int>(std::min<int64_t>(kLanes, left - (nblocks - 1) * kLanes));
        kMicrokernels[nblocks - 1][rows - 1](
            w.base + o0 * w.out, packed ? panel.data() + (p0 - first) * i_count : x + p0,
            bias ? bias + o0 : nullptr,
            yp + (n * o_count + o0) * positions + p0, packed ? panel_st : st, last_lanes);
      }
    }
  });
}

// output (N, O, out_h, out_w), any strides, = what write(y) makes of planar rows y
// (N, O, out_h, row_width), every one of which it writes: y is the output itself where it
// is contiguous and no columns are dropped, else scratch whose first out_w columns are
// copied out.
template <typename Write>
void planar_output(const at::Tensor& output, int64_t row_width, Write&& write) {
  const bool direct = row_width == output.size(3) && output.is_contiguous();
  const at::Tensor y = direct ? output
                              : at::empty({output.size(0), output.size(1), output.size(2), row_width},
                                          output.options());
  write(y);
  if (!direct) output.copy_(y.narrow(3, 0, output.size(3)));
}

// The bias as the planar kernel starts from it: zeros without one. (Starting the sums from
// it in registers spares a pass that fills the output and one that reads it back.)
at::Tensor planar_bias(const at::Tensor& bias, int64_t channels, const at::TensorOptions& options) {
  return bias.defined() ? bias.contiguous() : at::zeros({channels}, options);
}

// output = init + conv(planes, weight) for stride-1 geometry t, where init holds one
// value per output channel and planes (N, I, in_h + 2 pad_h, in_w + 2 pad_w) hold the
// padded input, followed by planar_slack(t) readable floats.
void planar_conv(const at::Tensor& planes, const PlanarWeight& w, const float* init,
                 const at::Tensor& output, const ConvGeometry& t) {
  planar_output(output, planes.size(3), [&](const at::Tensor& y) { planar_accumulate(planes, w, t, init, y); });
}

// grad_input of a dense convolution with unit dilation, phase by phase of the stride (one
// phase for stride 1; grad_input_as_forward.h), each phase through the planar kernel.
void grad_input_by_phase(const at::Tensor& grad_output, const at::Tensor& weight,
                         const at::Tensor& grad_input, const ConvGeometry& g) {
  const int64_t c = g.in_channels, kw = g.kernel_w;
  const int64_t taps = g.kernel_h * kw;
  const at::Tensor zeros = planar_bias(at::Tensor(), c, grad_input.options());
  for_each_stride_phase(g, grad_input, [&](const StridePhase& ph, const StridePhase& pw,
                                           const at::Tensor& phase_input) {
    const ConvGeometry t = phase_as_forward(g, ph, pw);
    // A 1x1 phase with as many rows and columns as grad_output is all of it (contiguous
    // NCHW, as the op hands it over) and reads it in place: the 1x1 path reads nothing past
    // a plane, so it needs neither padding nor slack.
    const bool whole = t.kernel_h * t.kernel_w == 1 && t.in_h == g.out_h && t.in_w == g.out_w;
    const at::Tensor planes = whole ? grad_output : phase_grad_output(grad_output, g, ph, pw, planar_slack(t));
    // Coefficient (c, k, i, j) is weight[k, c, tap0 + (taps - 1 - i) * stride, ...].
    const PlanarWeight flipped{weight.const_data_ptr<float>() + (ph.tap0 + (ph.taps - 1) * g.stride_h) * kw +
                                   pw.tap0 + (pw.taps - 1) * g.stride_w,
                               taps, c * taps, -g.stride_h * kw, -g.stride_w};
    planar_conv(planes, flipped, zeros.const_data_ptr<float>(), phase_input, t);
  });
}

}  // namespace

void dense_conv2d_forward_planar_avx2(const at::Tensor& input, const at::Tensor& weight,
                                      const at::Tensor& bias, const at::Tensor& output,
                                      const ConvGeometry& g) {
  // The padded input split into stride_h x stride_w phases (rows a, a + stride_h, ...;
  // columns b, b + stride_w, ...), and the output the sum over phases of a stride-1
  // convolution of each with the taps (a + stride_h i, b + stride_w j): consecutive outputs
  // read consecutive phase pixels, so the lanes stay a plane's pixels. Stride 1 is one
  // phase, the padded input itself, with any dilation.
  const int64_t sh = g.stride_h, sw = g.stride_w, kw = g.kernel_w, taps = g.kernel_h * kw;
  const bool strided = sh != 1 || sw != 1;
  TORCH_INTERNAL_ASSERT(!strided || (g.dilation_h == 1 && g.dilation_w == 1));
  const int64_t rows = (g.in_h + 2 * g.pad_h + sh - 1) / sh, cols = (g.in_w + 2 * g.pad_w + sw - 1) / sw;
  const int64_t phase_floats = g.batch * g.in_channels * rows * cols;
  // A 1x1 convolution without stride or padding reads the input as it is: the 1x1 path
  // copies exactly the positions it uses into its panels, so nothing is read past a plane
  // (a 14x14 plane, not whole vectors, was copied into padded planes first).
  const bool in_place = taps == 1 && !strided && g.pad_h == 0 && g.pad_w == 0;
  const int64_t phases_h = std::min(sh, g.kernel_h), phases_w = std::min(sw, kw);
  const int64_t slack = ((kw + sw - 1) / sw - 1) * g.dilation_w + kLanes;
  const at::Tensor phases =
      in_place ? input : at::zeros({phases_h * phases_w * phase_floats + slack}, input.options());
  // Phase positions [first, end) whose input position offset + stride * m - pad is inside
  // [0, size).
  const auto inside = [](int64_t offset, int64_t stride, int64_t pad, int64_t size, int64_t count) {
    const int64_t first = offset >= pad ? 0 : (pad - offset + stride - 1) / stride;
    const int64_t end = size - 1 + pad - offset >= 0 ? std::min(count, (size - 1 + pad - offset) / stride + 1) : 0;
    return std::make_pair(first, std::max(first, end));
  };
  const at::Tensor init = planar_bias(bias, g.out_channels, output.options());
  planar_output(output, cols, [&](const at::Tensor& y) {
    for (int64_t a = 0; a < phases_h; ++a) {
      for (int64_t b = 0; b < phases_w; ++b) {
        at::Tensor phase = in_place ? input
                                    : phases.narrow(0, (a * phases_w + b) * phase_floats, phase_floats)
                                          .view({g.batch, g.in_channels, rows, cols});
        const auto [m0, m1] = inside(a, sh, g.pad_h, g.in_h, rows);
        const auto [n0, n1] = inside(b, sw, g.pad_w, g.in_w, cols);
        if (!in_place && m0 < m1 && n0 < n1) {
          phase.narrow(2, m0, m1 - m0).narrow(3, n0, n1 - n0)
              .copy_(input.slice(2, a + sh * m0 - g.pad_h, a + sh * (m1 - 1) - g.pad_h + 1, sh)
                         .slice(3, b + sw * n0 - g.pad_w, b + sw * (n1 - 1) - g.pad_w + 1, sw));
        }
        ConvGeometry t = g;
        t.kernel_h = (g.kernel_h - a + sh - 1) / sh;
        t.kernel_w = (kw - b + sw - 1) / sw;
        t.in_h = rows;
        t.in_w = cols;
        t.stride_h = t.stride_w = 1;
        t.pad_h = t.pad_w = 0;
        // The first phase starts from the bias, the others add to what it wrote.
        planar_accumulate(phase, PlanarWeight{weight.const_data_ptr<float>() + a * kw + b,
                                              g.in_channels * taps, taps, sh * kw, sw},
                          t, a == 0 && b == 0 ? init.const_data_ptr<float>() : nullptr, y);
      }
    }
  });
}

void pointwise_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& grad_weight, const ConvGeometry& g) {
  // grad_weight (K x C) = sum over images of grad_output (K x P) . pixels (C x P)^T. On small
  // planes the fixed cost of each dot product (12 horizontal sums for 12 x P products)
  // outweighs the transposes the channels_last kernel pays.
  const int64_t k = g.out_channels, c = g.in_channels, plane = g.out_h * g.out_w;
  if (plane < 128 * kLanes) {
    dense_conv2d_grad_weight_avx2(grad_output, input, grad_weight, g);
    return;
  }
  const bool strided = g.stride_h != 1 || g.stride_w != 1;
  const at::Tensor pixels =
      strided ? input.slice(2, 0, c10::nullopt, g.stride_h).slice(3, 0, c10::nullopt, g.stride_w).contiguous()
              : input;
  grad_weight.zero_();
  // Pixels per pass: about 256 KB of both operands, reused by all of a thread's tiles.
  const int64_t chunk = std::max<int64_t>(8 * kLanes, (int64_t{64} << 10) / (k + c) / kLanes * kLanes);
  const int64_t row_tiles = (k + kDotRows - 1) / kDotRows, col_tiles = (c + kDotCols - 1) / kDotCols;
  const float* gp = grad_output.const_data_ptr<float>();
  const float* xp = pixels.const_data_ptr<float>();
  float* wp = grad_weight.mutable_data_ptr<float>();
  at::parallel_for(0, row_tiles * col_tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t q0 = 0; q0 < plane; q0 += chunk) {
        const int64_t length = std::min(chunk, plane - q0);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t k0 = task / col_tiles * kDotRows, c0 = task % col_tiles * kDotCols;
          const int rows = static_cast<int>(std::min<int64_t>(kDotRows, k - k0));
          const int cols = static_cast<int>(std::min<int64_t>(kDotCols, c - c0));
          kDotTiles[rows - 1][cols - 1](gp + (n * k + k0) * plane + q0, plane,
                                        xp + (n * c + c0) * plane + q0, plane, length,
                                        wp + k0 * c + c0, c);
        }
      }
    }
  });
}

bool dense_conv2d_grad_input_avx2(const at::Tensor& grad_output, const at::Tensor& weight,
                                  const at::Tensor& grad_input, const ConvGeometry& g) {
  // Phase by phase over NCHW planes where the stride or the kernel size makes the
  // channels_last kernel waste work (its 6-pixel row tiles on short rows, a spread's zeros),
  // else through the channels_last forward kernel.
  const bool unit_dilation = g.dilation_h == 1 && g.dilation_w == 1;
  const bool strided = g.stride_h != 1 || g.stride_w != 1;
  const bool pointwise = g.kernel_h == 1 && g.kernel_w == 1;
  if (unit_dilation && (strided || pointwise || g.in_w < kShortRow)) {
    grad_input_by_phase(grad_output, weight, grad_input, g);
    return true;
  }
  if (!grad_input_as_forward_applies(g)) return false;
  constexpr auto cl = at::MemoryFormat::ChannelsLast;
  at::Tensor result = at::empty(grad_input.sizes(), grad_input.options(), cl);
  forward_dense(spread_by_stride(grad_output, g, cl), pack_weight(weight, /*for_grad_input=*/true),
                at::Tensor(), result, stride1_grad_input_as_forward(with_unit_stride(g)));
  grad_input.copy_(result);
  return true;
}

void dense_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& grad_weight, const ConvGeometry& g) {
  // For each tap (r, s): grad_weight[:, :, r, s] = sum over output pixels of the pixel's
  // grad_output channels times its input channels (shifted by the tap). The microkernel
  // runs it with the output pixels of a row as reduction steps and a chunk of output rows
  // as its kernel-row loop, so the sums stay in registers over the whole chunk, in one of
  // two orientations:
  // - per tap, 6 output channels as broadcast "pixels" (of grad_output) and 16 input
  //   channels as lanes (of the input); sums (R, S, K, C), a 1x1 grad_weight as it is;
  // - with fewer input channels than a lane block (a first layer's 3 would fill 3 of 16
  //   lanes), per kernel row, 16 output channels as lanes (of grad_output) and as "pixels"
  //   6 consecutive floats of an input row, which under one output pixel are the taps
  //   (s, c) of the kernel row in order (unit column dilation); sums (R, S, C, K).
  const int64_t k = g.out_channels, c = g.in_channels;
  const bool taps_as_pixels = c < kLanes && g.dilation_w == 1 && g.kernel_w > 1;
  // Vector operands read whole lane blocks: slack past the last one.
  const at::Tensor x = padded_nhwc(input, g, /*slack=*/taps_as_pixels ? 0 : kLanes);
  const int64_t go_floats = g.batch * g.out_h * g.out_w * k;
  at::Tensor go = at::empty({go_floats + (taps_as_pixels ? kLanes : 0)}, grad_output.options());
  go.narrow(0, 0, go_floats).view({g.batch, g.out_h, g.out_w, k}).copy_(grad_output.permute({0, 2, 3, 1}));
  const bool one_tap = g.kernel_h == 1 && g.kernel_w == 1;
  at::Tensor sums = one_tap ? grad_weight : at::empty({g.kernel_h, g.kernel_w, k, c}, grad_weight.options());
  sums.zero_();

  const int64_t padded_h = g.in_h + 2 * g.pad_h, padded_w = g.in_w + 2 * g.pad_w;
  const int64_t x_row_floats = g.stride_h * padded_w * c, go_row_floats = g.out_w * k;
  // Rows per chunk: the chunk's input and grad_output rows fit in about 256 KB of cache,
  // reused by every tile of the thread.
  const int64_t chunk_rows = std::max<int64_t>(1, (int64_t{64} << 10) / (x_row_floats + go_row_floats));
  // Per tap group (a tap, or a kernel row): pixel tiles x lane block pairs.
  const int64_t tap_groups = taps_as_pixels ? g.kernel_h : g.kernel_h * g.kernel_w;
  const int64_t pixels = taps_as_pixels ? g.kernel_w * c : k, lanes = taps_as_pixels ? k : c;
  const int64_t pixel_tiles = (pixels + kTilePixels - 1) / kTilePixels;
  const int64_t blocks = (lanes + kLanes - 1) / kLanes;
  const int64_t block_pairs = (blocks + kTileBlocks - 1) / kTileBlocks;
  const int last_lanes = static_cast<int>(lanes - (blocks - 1) * kLanes);
  const float* xp = x.const_data_ptr<float>();
  const float* gp = go.const_data_ptr<float>();
  float* sp = sums.mutable_data_ptr<float>();
  const int64_t tasks = tap_groups * pixel_tiles * block_pairs;
  // Each thread owns a range of output tiles and sweeps the rows once for all of them
  // (row chunks outside, tiles inside): a sweep per tile would stream the whole input and
  // grad_output once per tile.
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t oh0 = 0; oh0 < g.out_h; oh0 += chunk_rows) {
        const int64_t rows = std::min(chunk_rows, g.out_h - oh0);
        const float* go_rows = gp + (n * g.out_h + oh0) * go_row_floats;
        const float* x_rows = xp + (n * padded_h + oh0 * g.stride_h) * padded_w * c;
        const TileSteps go_pixels{/*pixel=*/1, /*tap_row=*/go_row_floats, /*tap_col=*/0, /*x_step=*/k,
                                  /*block=*/kLanes, /*w_tap_row=*/x_row_floats, /*w_tap_col=*/0,
                                  /*w_step=*/g.stride_w * c, /*out_pixel=*/c, /*kernel_h=*/rows,
                                  /*kernel_w=*/1, /*depth=*/g.out_w};
        const TileSteps x_pixels{/*pixel=*/1, /*tap_row=*/x_row_floats, /*tap_col=*/0,
                                 /*x_step=*/g.stride_w * c, /*block=*/kLanes,
                                 /*w_tap_row=*/go_row_floats, /*w_tap_col=*/0, /*w_step=*/k,
                                 /*out_pixel=*/k, /*kernel_h=*/rows, /*kernel_w=*/1, /*depth=*/g.out_w};
        for (int64_t task = begin; task < end; ++task) {
          const int64_t pair = task % block_pairs, tile = task / block_pairs % pixel_tiles;
          const int64_t group = task / (block_pairs * pixel_tiles);
          const int64_t p0 = tile * kTilePixels, block0 = pair * kTileBlocks;
          const int tile_pixels = static_cast<int>(std::min<int64_t>(kTilePixels, pixels - p0));
          const int nblocks = static_cast<int>(std::min<int64_t>(kTileBlocks, blocks - block0));
          const int tile_last_lanes = block0 + nblocks == blocks ? last_lanes : static_cast<int>(kLanes);
          const Microkernel kernel = kMicrokernels[nblocks - 1][tile_pixels - 1];
          if (taps_as_pixels) {
            // Kernel row `group`; pixel j = s * c + i is tap (group, s), input channel i.
            kernel(x_rows + group * g.dilation_h * padded_w * c + p0, go_rows + block0 * kLanes, nullptr,
                   sp + (group * pixels + p0) * k + block0 * kLanes, x_pixels, tile_last_lanes);
          } else {
            const int64_t r = group / g.kernel_w, s = group % g.kernel_w;
            kernel(go_rows + p0, x_rows + (r * g.dilation_h * padded_w + s * g.dilation_w) * c + block0 * kLanes,
                   nullptr, sp + (group * k + p0) * c + block0 * kLanes, go_pixels, tile_last_lanes);
          }
        }
      }
    }
  });
  if (!one_tap) unpack_tap_sums(sums, taps_as_pixels, grad_weight);
}

void dense_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& output,
                               const ConvGeometry& g) {
  const at::Tensor packed = cached_pack(weight, kPackedLayout, [](const at::Tensor& w) {
    return pack_weight(w, /*for_grad_input=*/false);
  });
  forward_dense(input, packed, bias, output, g);
}

}  // namespace classic_ops::cpu
