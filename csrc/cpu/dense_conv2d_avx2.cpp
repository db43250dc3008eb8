// Dense float32 convolution on AVX2/FMA, in the style of oneDNN's AVX2 direct kernel. The
// input is read as padded NHWC, the weight is repacked once into blocks of 8 output
// channels (cached while the weight is unchanged), and the microkernel holds a register
// tile of up to 6 output pixels x 16 output channels (12 ymm accumulators): for each input
// channel it loads two weight vectors and broadcasts one input value per pixel against
// them. Any kernel size, stride, dilation and padding; 1x1 is the same kernel with R = S = 1.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

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

// Where the microkernel reads and writes, in floats.
struct TileSteps {
  int64_t pixel;      // input: from one output pixel's window to the next (stride_w * C)
  int64_t tap_row;    // input: from one kernel row to the next (dilation_h * padded_w * C)
  int64_t tap_col;    // input: from one kernel column to the next (dilation_w * C)
  int64_t block;      // packed weight: from one channel block to the next (R * S * C * 8)
  int64_t out_pixel;  // output: from one pixel to the next (K)
  int64_t kernel_h, kernel_w, channels;
};

// acc[p][b] = bias + sum over taps and input channels; P pixels, B channel blocks. The last
// block holds `last_block_lanes` valid channels: masked stores keep inside the K channels.
// (Vector values never cross the boundary to code compiled without AVX: its ABI differs.)
template <int P, int B>
__attribute__((target("avx2,fma"))) void microkernel(const float* x, const float* w,
                                                     const float* bias, float* y,
                                                     const TileSteps& st, int last_block_lanes) {
  __m256 acc[P][B];
#pragma GCC unroll 2
  for (int b = 0; b < B; ++b) {
    const __m256 init = _mm256_loadu_ps(bias + b * kLanes);
#pragma GCC unroll 6
    for (int p = 0; p < P; ++p) acc[p][b] = init;
  }
  for (int64_t r = 0; r < st.kernel_h; ++r) {
    for (int64_t s = 0; s < st.kernel_w; ++s) {
      const float* xs = x + r * st.tap_row + s * st.tap_col;
      const float* ws = w + (r * st.kernel_w + s) * st.channels * kLanes;
      // Fully unrolled tile loops, so that the accumulators live in registers.
      for (int64_t c = 0; c < st.channels; ++c) {
        __m256 wv[B];
#pragma GCC unroll 2
        for (int b = 0; b < B; ++b) wv[b] = _mm256_loadu_ps(ws + b * st.block + c * kLanes);
#pragma GCC unroll 6
        for (int p = 0; p < P; ++p) {
          const __m256 xv = _mm256_broadcast_ss(xs + p * st.pixel + c);
#pragma GCC unroll 2
          for (int b = 0; b < B; ++b) acc[p][b] = _mm256_fmadd_ps(xv, wv[b], acc[p][b]);
        }
      }
    }
  }
  const __m256i store_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(last_block_lanes),
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
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
  const TileSteps st{g.stride_w * c, g.dilation_h * padded_w * c, g.dilation_w * c,
                     g.kernel_h * g.kernel_w * c * kLanes, g.out_channels,
                     g.kernel_h, g.kernel_w, c};
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

void dense_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& output,
                               const ConvGeometry& g) {
  if (g.groups == 1) {
    forward_dense(input, weight, bias, output, g);
    return;
  }
  // Grouped (not depthwise) convolutions are rare in the classic networks: the reference
  // loops run them on NCHW copies.
  at::Tensor out_nchw = at::empty(output.sizes(), output.options(), at::MemoryFormat::Contiguous);
  grouped_conv2d_forward(input.contiguous(), weight, bias, out_nchw, g);
  output.copy_(out_nchw);
}

}  // namespace classic_ops::cpu
