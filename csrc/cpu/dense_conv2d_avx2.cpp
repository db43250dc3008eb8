// Dense float32 convolution on AVX2/FMA, in the style of oneDNN's AVX2 direct kernel. The
// input is read as padded NHWC, the weight is repacked once into blocks of 8 output
// channels (cached while the weight is unchanged), and the microkernel holds a register
// tile of up to 6 output pixels x 16 output channels (12 ymm accumulators): for each input
// channel it loads two weight vectors and broadcasts one input value per pixel against
// them. Any kernel size, stride, dilation and padding; 1x1 is the same kernel with R = S = 1.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include "../grad_input_as_forward.h"
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
  const int64_t k = weight.size(0), c = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  const int64_t out_ch = for_grad_input ? c : k, in_ch = for_grad_input ? k : c;
  const int64_t blocks = (out_ch + kLanes - 1) / kLanes;
  at::Tensor packed = at::empty({blocks, kh, kw, in_ch, kLanes}, weight.options());
  const float* w = weight.const_data_ptr<float>();
  float* dst = packed.mutable_data_ptr<float>();
  at::parallel_for(0, blocks * in_ch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task / in_ch, i = task % in_ch;
      for (int64_t r = 0; r < kh; ++r) {
        for (int64_t s = 0; s < kw; ++s) {
          float* lanes = dst + (((block * kh + r) * kw + s) * in_ch + i) * kLanes;
          for (int64_t lane = 0; lane < kLanes; ++lane) {
            const int64_t o = block * kLanes + lane;
            if (o >= out_ch) {
              lanes[lane] = 0.0f;
            } else if (for_grad_input) {
              lanes[lane] = w[((i * c + o) * kh + kh - 1 - r) * kw + kw - 1 - s];
            } else {
              lanes[lane] = w[((o * c + i) * kh + r) * kw + s];
            }
          }
        }
      }
    }
  });
  return packed;
}

// grad_weight (K, C, R, S) from the microkernel's sums (R, S, K, C): per output channel, a
// transpose of R*S rows of C, each read sequentially (a permuting copy of a large layer's
// 9 MB strides badly and cost more than the products).
void unpack_tap_sums(const at::Tensor& sums, const at::Tensor& grad_weight) {
  const int64_t k = grad_weight.size(0), c = grad_weight.size(1);
  const int64_t taps = grad_weight.size(2) * grad_weight.size(3);
  const float* src = sums.const_data_ptr<float>();
  float* dst = grad_weight.mutable_data_ptr<float>();
  at::parallel_for(0, k, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t i = 0; i < c; ++i) {
        for (int64_t t = 0; t < taps; ++t) dst[(o * c + i) * taps + t] = src[(t * k + o) * c + i];
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
  int64_t w_tap;      // w: from one kernel tap to the next
  int64_t w_step;     // w: per reduction step
  int64_t out_pixel;  // y: from one pixel to the next
  int64_t kernel_h, kernel_w, depth;
};

// y[p][b] = init + sum over taps and reduction steps of x * w, where init is `bias` (one
// vector per block) or, when bias is null, y itself (accumulation). The last block holds
// `last_block_lanes` valid lanes: masked loads and stores keep inside them. (Vector values
// never cross the boundary to code compiled without AVX: its ABI differs.)
template <int P, int B>
__attribute__((target("avx2,fma"))) void microkernel(const float* x, const float* w,
                                                     const float* bias, float* y,
                                                     const TileSteps& st, int last_block_lanes) {
  const __m256i store_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(last_block_lanes),
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 acc[P][B];
#pragma GCC unroll 2
  for (int b = 0; b < B; ++b) {
    const bool masked = b == B - 1 && last_block_lanes != kLanes;
#pragma GCC unroll 6
    for (int p = 0; p < P; ++p) {
      const float* init = bias ? bias + b * kLanes : y + p * st.out_pixel + b * kLanes;
      acc[p][b] = masked && !bias ? _mm256_maskload_ps(init, store_mask) : _mm256_loadu_ps(init);
    }
  }
  for (int64_t r = 0; r < st.kernel_h; ++r) {
    for (int64_t s = 0; s < st.kernel_w; ++s) {
      const float* xs = x + r * st.tap_row + s * st.tap_col;
      const float* ws = w + (r * st.kernel_w + s) * st.w_tap;
      // Fully unrolled tile loops, so that the accumulators live in registers.
      for (int64_t c = 0; c < st.depth; ++c) {
        __m256 wv[B];
#pragma GCC unroll 2
        for (int b = 0; b < B; ++b) wv[b] = _mm256_loadu_ps(ws + b * st.block + c * st.w_step);
#pragma GCC unroll 6
        for (int p = 0; p < P; ++p) {
          const __m256 xv = _mm256_broadcast_ss(xs + p * st.pixel + c * st.x_step);
#pragma GCC unroll 2
          for (int b = 0; b < B; ++b) acc[p][b] = _mm256_fmadd_ps(xv, wv[b], acc[p][b]);
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
                     /*block=*/g.kernel_h * g.kernel_w * c * kLanes, /*w_tap=*/c * kLanes,
                     /*w_step=*/kLanes, /*out_pixel=*/g.out_channels, g.kernel_h, g.kernel_w,
                     /*depth=*/c};
  const int last_lanes = static_cast<int>(g.out_channels - (blocks - 1) * kLanes);
  const int64_t block_pairs = (blocks + kTileBlocks - 1) / kTileBlocks;
  const int64_t rows = g.batch * g.out_h;

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
      for (int64_t ow = 0; ow < g.out_w; ow += kTilePixels) {
        const int pixels = static_cast<int>(std::min<int64_t>(kTilePixels, g.out_w - ow));
        kMicrokernels[nblocks - 1][pixels - 1](x_row + ow * st.pixel, w_blocks,
                                               bp + block0 * kLanes, y_row + ow * g.out_channels,
                                               st, tile_last_lanes);
      }
    }
  });
}

}  // namespace

void pointwise_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& output,
                                   const ConvGeometry& g) {
  // out[n] (K x P) = weight (K x C) . x[n] (C x P): the microkernel's broadcast "pixels"
  // are 6 output channels (weight rows), its lane blocks 16 pixels of a plane, its
  // reduction the input channels; it accumulates onto output rows preset to the bias.
  const int64_t c = g.in_channels, k = g.out_channels, plane = g.out_h * g.out_w;
  const bool strided = g.stride_h != 1 || g.stride_w != 1;
  at::Tensor x = input;
  if (strided || plane % kLanes != 0) {
    // The sampled pixels, in a buffer with slack: a partial last lane block loads up to
    // 7 floats past the last plane (into lanes it never stores).
    const int64_t count = g.batch * c * plane;
    x = at::empty({count + kLanes}, input.options()).narrow(0, 0, count).view({g.batch, c, g.out_h, g.out_w});
    x.copy_(strided ? input.slice(2, 0, c10::nullopt, g.stride_h).slice(3, 0, c10::nullopt, g.stride_w)
                    : input);
  }
  if (bias.defined()) {
    output.copy_(bias.view({1, k, 1, 1}).expand_as(output));
  } else {
    output.zero_();
  }
  const TileSteps st{/*pixel=*/c, /*tap_row=*/0, /*tap_col=*/0, /*x_step=*/1,
                     /*block=*/kLanes, /*w_tap=*/0, /*w_step=*/plane, /*out_pixel=*/plane,
                     /*kernel_h=*/1, /*kernel_w=*/1, /*depth=*/c};
  const int64_t channel_tiles = (k + kTilePixels - 1) / kTilePixels;
  const int64_t pixel_step = kTileBlocks * kLanes;
  const float* wp = weight.const_data_ptr<float>();
  const float* xp = x.const_data_ptr<float>();
  float* yp = output.mutable_data_ptr<float>();
  at::parallel_for(0, g.batch * channel_tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / channel_tiles, k0 = task % channel_tiles * kTilePixels;
      const int rows = static_cast<int>(std::min<int64_t>(kTilePixels, k - k0));
      for (int64_t p0 = 0; p0 < plane; p0 += pixel_step) {
        const int64_t left = plane - p0;
        const int nblocks = left > kLanes ? 2 : 1;
        const int last_lanes = static_cast<int>(std::min<int64_t>(kLanes, left - (nblocks - 1) * kLanes));
        kMicrokernels[nblocks - 1][rows - 1](wp + k0 * c, xp + n * c * plane + p0, nullptr,
                                             yp + (n * k + k0) * plane + p0, st, last_lanes);
      }
    }
  });
}

bool dense_conv2d_grad_input_avx2(const at::Tensor& grad_output, const at::Tensor& weight,
                                  const at::Tensor& grad_input, const ConvGeometry& g) {
  if (!grad_input_as_forward_applies(g)) return false;
  constexpr auto cl = at::MemoryFormat::ChannelsLast;
  at::Tensor result = at::empty(grad_input.sizes(), grad_input.options(), cl);
  forward_dense(spread_by_stride(grad_output, g, cl), pack_weight(weight, /*for_grad_input=*/true),
                at::Tensor(), result,
                stride1_grad_input_as_forward(with_unit_stride(g)));
  grad_input.copy_(result);
  return true;
}

void dense_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& grad_weight, const ConvGeometry& g) {
  // For each tap (r, s): grad_weight[:, :, r, s] = sum over output pixels of the pixel's
  // grad_output channels times its input channels (shifted by the tap). The microkernel
  // runs it with 6 output channels as broadcast "pixels", 16 input channels as lane
  // blocks, the output pixels of a row as reduction steps and a chunk of output rows as
  // its kernel-row loop, so the sums stay in registers over the whole chunk. The sums
  // come out as (R, S, K, C): a 1x1 convolution's grad_weight as it is.
  const int64_t k = g.out_channels, c = g.in_channels;
  const at::Tensor x = padded_nhwc(input, g, /*slack=*/kLanes);
  const at::Tensor go = grad_output.permute({0, 2, 3, 1}).contiguous();
  const bool one_tap = g.kernel_h == 1 && g.kernel_w == 1;
  at::Tensor sums = one_tap ? grad_weight : at::empty({g.kernel_h, g.kernel_w, k, c}, grad_weight.options());
  sums.zero_();

  const int64_t padded_h = g.in_h + 2 * g.pad_h, padded_w = g.in_w + 2 * g.pad_w;
  const int64_t x_row_floats = g.stride_h * padded_w * c, go_row_floats = g.out_w * k;
  // Rows per chunk: the chunk's input and grad_output rows fit in about 256 KB of cache,
  // reused by every tile of the thread.
  const int64_t chunk_rows = std::max<int64_t>(1, (int64_t{64} << 10) / (x_row_floats + go_row_floats));
  const int64_t channel_tiles = (k + kTilePixels - 1) / kTilePixels;
  const int64_t blocks = (c + kLanes - 1) / kLanes;
  const int64_t block_pairs = (blocks + kTileBlocks - 1) / kTileBlocks;
  const int last_lanes = static_cast<int>(c - (blocks - 1) * kLanes);
  const float* xp = x.const_data_ptr<float>();
  const float* gp = go.const_data_ptr<float>();
  float* sp = sums.mutable_data_ptr<float>();
  const int64_t tasks = g.kernel_h * g.kernel_w * channel_tiles * block_pairs;
  // Each thread owns a range of output tiles and sweeps the rows once for all of them
  // (row chunks outside, tiles inside): a sweep per tile would stream the whole input and
  // grad_output once per tile.
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t oh0 = 0; oh0 < g.out_h; oh0 += chunk_rows) {
        const TileSteps st{/*pixel=*/1, /*tap_row=*/go_row_floats, /*tap_col=*/0, /*x_step=*/k,
                           /*block=*/kLanes, /*w_tap=*/x_row_floats, /*w_step=*/g.stride_w * c,
                           /*out_pixel=*/c, /*kernel_h=*/std::min(chunk_rows, g.out_h - oh0),
                           /*kernel_w=*/1, /*depth=*/g.out_w};
        const float* go_rows = gp + (n * g.out_h + oh0) * go_row_floats;
        for (int64_t task = begin; task < end; ++task) {
          const int64_t pair = task % block_pairs, tile = task / block_pairs % channel_tiles;
          const int64_t tap = task / (block_pairs * channel_tiles);
          const int64_t r = tap / g.kernel_w, s = tap % g.kernel_w;
          const int64_t k0 = tile * kTilePixels, block0 = pair * kTileBlocks;
          const int pixels = static_cast<int>(std::min<int64_t>(kTilePixels, k - k0));
          const int nblocks = static_cast<int>(std::min<int64_t>(kTileBlocks, blocks - block0));
          const int tile_last_lanes = block0 + nblocks == blocks ? last_lanes : static_cast<int>(kLanes);
          const float* x_rows = xp + ((n * padded_h + oh0 * g.stride_h + r * g.dilation_h) * padded_w +
                                      s * g.dilation_w) * c + block0 * kLanes;
          kMicrokernels[nblocks - 1][pixels - 1](go_rows + k0, x_rows, nullptr,
                                                 sp + (tap * k + k0) * c + block0 * kLanes, st,
                                                 tile_last_lanes);
        }
      }
    }
  });
  if (!one_tap) unpack_tap_sums(sums, grad_weight);
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
