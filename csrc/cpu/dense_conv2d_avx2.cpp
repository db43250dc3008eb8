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

// (K, C, R, S) -> (ceil(K / 8), R, S, C, 8), output channels past K zero.
at::Tensor pack_weight(const at::Tensor& weight) {
  const int64_t k = weight.size(0), blocks = (k + kLanes - 1) / kLanes;
  at::Tensor padded = at::zeros({blocks * kLanes, weight.size(1), weight.size(2), weight.size(3)},
                                weight.options());
  padded.narrow(0, 0, k).copy_(weight);
  return padded.view({blocks, kLanes, weight.size(1), weight.size(2), weight.size(3)})
      .permute({0, 3, 4, 2, 1})
      .contiguous();
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

// The input as NHWC with the padding materialized, so the microkernel needs no bounds checks.
at::Tensor padded_nhwc(const at::Tensor& input, const ConvGeometry& g) {
  const at::Tensor nhwc = input.permute({0, 2, 3, 1});
  if (g.pad_h == 0 && g.pad_w == 0) return nhwc.contiguous();
  at::Tensor padded = at::zeros({g.batch, g.in_h + 2 * g.pad_h, g.in_w + 2 * g.pad_w, g.in_channels},
                                input.options());
  padded.narrow(1, g.pad_h, g.in_h).narrow(2, g.pad_w, g.in_w).copy_(nhwc);
  return padded;
}

void forward_dense(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                   const at::Tensor& output, const ConvGeometry& g) {
  const at::Tensor x = padded_nhwc(input, g);
  const at::Tensor packed = cached_pack(weight, kPackedLayout, pack_weight);
  const int64_t blocks = packed.size(0);
  at::Tensor bias_padded = at::zeros({blocks * kLanes}, weight.options());
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
  const at::Tensor flipped = weight.flip({2, 3}).transpose(0, 1).contiguous();
  at::Tensor result = at::empty(grad_input.sizes(), grad_input.options(), cl);
  forward_dense(spread_by_stride(grad_output, g, cl), flipped, at::Tensor(), result,
                stride1_grad_input_as_forward(with_unit_stride(g)));
  grad_input.copy_(result);
  return true;
}

void dense_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& grad_weight, const ConvGeometry& g) {
  // For each tap (r, s): grad_weight[:, :, r, s] = sum over output pixels of the pixel's
  // input channels (shifted by the tap) times its grad_output channels. The microkernel
  // runs it with 6 input channels as broadcast "pixels", 16 output channels as lane
  // blocks, the output pixels of a row as reduction steps, accumulating over rows.
  const at::Tensor x = padded_nhwc(input, g);
  const int64_t k = g.out_channels, blocks = (k + kLanes - 1) / kLanes, kp = blocks * kLanes;
  at::Tensor go = at::zeros({g.batch, g.out_h, g.out_w, kp}, grad_output.options());
  go.narrow(3, 0, k).copy_(grad_output.permute({0, 2, 3, 1}));
  at::Tensor sums = at::zeros({g.kernel_h, g.kernel_w, g.in_channels, kp}, grad_output.options());

  const int64_t c = g.in_channels, padded_h = g.in_h + 2 * g.pad_h, padded_w = g.in_w + 2 * g.pad_w;
  const TileSteps st{/*pixel=*/1, /*tap_row=*/0, /*tap_col=*/0, /*x_step=*/g.stride_w * c,
                     /*block=*/kLanes, /*w_tap=*/0, /*w_step=*/kp, /*out_pixel=*/kp,
                     /*kernel_h=*/1, /*kernel_w=*/1, /*depth=*/g.out_w};
  const int64_t channel_tiles = (c + kTilePixels - 1) / kTilePixels;
  const int64_t block_pairs = (blocks + kTileBlocks - 1) / kTileBlocks;
  const float* xp = x.const_data_ptr<float>();
  const float* gp = go.const_data_ptr<float>();
  float* sp = sums.mutable_data_ptr<float>();
  const int64_t tasks = g.kernel_h * g.kernel_w * channel_tiles * block_pairs;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t pair = task % block_pairs, tile = task / block_pairs % channel_tiles;
      const int64_t tap = task / (block_pairs * channel_tiles);
      const int64_t r = tap / g.kernel_w, s = tap % g.kernel_w;
      const int64_t c0 = tile * kTilePixels, k0 = pair * kTileBlocks * kLanes;
      const int pixels = static_cast<int>(std::min<int64_t>(kTilePixels, c - c0));
      const int nblocks = static_cast<int>(std::min<int64_t>(kTileBlocks, blocks - pair * kTileBlocks));
      float* y = sp + (tap * c + c0) * kp + k0;
      for (int64_t n = 0; n < g.batch; ++n) {
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          const float* x_row = xp + ((n * padded_h + oh * g.stride_h + r * g.dilation_h) * padded_w +
                                     s * g.dilation_w) * c + c0;
          const float* go_row = gp + (n * g.out_h + oh) * g.out_w * kp + k0;
          kMicrokernels[nblocks - 1][pixels - 1](x_row, go_row, nullptr, y, st, kLanes);
        }
      }
    }
  });
  grad_weight.copy_(sums.narrow(3, 0, k).permute({3, 2, 0, 1}));
}

void dense_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& output,
                               const ConvGeometry& g) {
  forward_dense(input, weight, bias, output, g);
}

}  // namespace classic_ops::cpu
