// Depthwise convolution forward (groups = in_channels, any channel multiplier, any kernel
// size, stride and dilation).
//
// The common shapes (square 3x3 and 7x7 windows, stride 1 or 2, no dilation) are compiled
// in: a thread computes kOuts neighbouring outputs of one row, so each input element it
// loads serves several outputs, and the loops unroll. Other shapes read the same template
// parameters at run time (kWindow = 0).
//
// NCHW: the fixed shapes run row segments straight from global memory (L1 serves the
// overlap between neighbouring threads). Any other shape runs in shared-memory tiles: a
// block copies the input patch under a kTileH x kTileW output tile (zero-padded at the
// border) and the plane's filter into shared memory, converted to the accumulation type,
// so each input element is read from global memory once rather than once per tap.
//
// channels_last (multiplier 1): a thread takes 16 bytes of consecutive channels, with
// vector loads; neighbouring threads read neighbouring channels, so every access is
// coalesced.
#include <type_traits>

#include "device_math.cuh"
#include "hardware.cuh"
#include "launchers.h"

namespace classic_ops::cuda {
namespace {

constexpr int kTileW = 32, kTileH = 16;
constexpr int kThreadsX = 32, kThreadsY = 8;  // each thread: kTileH / kThreadsY output rows
constexpr int kMaxSharedBytes = 48 * 1024;

struct PatchShape {
  int64_t h, w;
};

__host__ __device__ inline PatchShape patch_shape(const ConvGeometry& g) {
  return {(kTileH - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 1,
          (kTileW - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1};
}

int64_t tiled_shared_bytes(const ConvGeometry& g, int acc_bytes) {
  const PatchShape p = patch_shape(g);
  return (p.h * p.w + g.kernel_h * g.kernel_w) * acc_bytes;
}

template <typename T>
__global__ void __launch_bounds__(kThreadsX* kThreadsY)
    tiled_nchw_kernel(const T* __restrict__ input, const T* __restrict__ weight,
                      const T* __restrict__ bias, T* __restrict__ output, ConvGeometry g,
                      int tiles_w) {
  using Acc = acc_t<T>;
  unsigned char* const shared_bytes = dynamic_shared_memory();
  Acc* patch = reinterpret_cast<Acc*>(shared_bytes);
  const PatchShape shape = patch_shape(g);
  const int patch_h = static_cast<int>(shape.h), patch_w = static_cast<int>(shape.w);
  Acc* filter = patch + patch_h * patch_w;

  const int64_t plane = blockIdx.x;  // n * out_channels + k
  const int64_t k = plane % g.out_channels, n = plane / g.out_channels;
  const int64_t channel = k / g.out_channels_per_group();
  const int oh0 = static_cast<int>(blockIdx.y / tiles_w) * kTileH;
  const int ow0 = static_cast<int>(blockIdx.y % tiles_w) * kTileW;
  const int ih0 = oh0 * static_cast<int>(g.stride_h) - static_cast<int>(g.pad_h);
  const int iw0 = ow0 * static_cast<int>(g.stride_w) - static_cast<int>(g.pad_w);
  const int taps = static_cast<int>(g.kernel_h * g.kernel_w);

  const T* in_plane = input + (n * g.in_channels + channel) * g.in_h * g.in_w;
  const int tid = threadIdx.y * kThreadsX + threadIdx.x;
  for (int e = tid; e < patch_h * patch_w; e += kThreadsX * kThreadsY) {
    const int ih = ih0 + e / patch_w, iw = iw0 + e % patch_w;
    const bool inside = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
    patch[e] = inside ? to_acc(in_plane[int64_t{ih} * g.in_w + iw]) : Acc(0);
  }
  for (int e = tid; e < taps; e += kThreadsX * kThreadsY) filter[e] = to_acc(weight[k * taps + e]);
  __syncthreads();

  const int ow = ow0 + threadIdx.x;
  if (ow >= g.out_w) return;
  const Acc initial = bias ? to_acc(bias[k]) : Acc(0);
  T* out_plane = output + plane * g.out_h * g.out_w;
  for (int oy = threadIdx.y; oy < kTileH; oy += kThreadsY) {
    const int oh = oh0 + oy;
    if (oh >= g.out_h) break;
    const Acc* window = patch + oy * static_cast<int>(g.stride_h) * patch_w +
                        threadIdx.x * static_cast<int>(g.stride_w);
    Acc acc = initial;
    for (int r = 0; r < g.kernel_h; ++r) {
      const Acc* row = window + r * static_cast<int>(g.dilation_h) * patch_w;
      for (int s = 0; s < g.kernel_w; ++s)
        acc += row[s * static_cast<int>(g.dilation_w)] * filter[r * g.kernel_w + s];
    }
    out_plane[int64_t{oh} * g.out_w + ow] = from_acc<T>(acc);
  }
}

// A compile-time window size and stride, or 0 for "read it from the geometry".
template <int kValue>
using Fixed = std::integral_constant<int, kValue>;

// The outputs per thread along a row: several where the window is compiled in.
template <int kWindow>
constexpr int kOuts = kWindow > 0 ? 4 : 1;

// Calls launch(Fixed<window>, Fixed<stride>) with the compiled-in shape that matches g,
// or with Fixed<0> for both when none does.
template <class Launch>
cudaError_t with_compiled_shape(const ConvGeometry& g, Launch&& launch) {
  const bool square = g.kernel_h == g.kernel_w && g.stride_h == g.stride_w &&
                      g.dilation_h == 1 && g.dilation_w == 1;
  if (square && g.kernel_h == 3 && g.stride_h == 1) return launch(Fixed<3>{}, Fixed<1>{});
  if (square && g.kernel_h == 3 && g.stride_h == 2) return launch(Fixed<3>{}, Fixed<2>{});
  if (square && g.kernel_h == 7 && g.stride_h == 1) return launch(Fixed<7>{}, Fixed<1>{});
  if (square && g.kernel_h == 7 && g.stride_h == 2) return launch(Fixed<7>{}, Fixed<2>{});
  return launch(Fixed<0>{}, Fixed<0>{});
}

bool has_compiled_shape(const ConvGeometry& g) {
  return with_compiled_shape(g, [](auto window, auto) {
           return decltype(window)::value > 0 ? cudaSuccess : cudaErrorNotSupported;
         }) == cudaSuccess;
}

// The thread counts below are kept under 2^30, so 32-bit index arithmetic is exact.
constexpr int64_t kMaxThreads = int64_t{1} << 30;

// A thread's flat index split into its row segment and the rest, the rest into its output
// row and the rest again, by divisors made on the host: NCHW threads take (plane, row,
// segment) and then plane into (image, channel); channels_last threads take (image, row,
// segment) after splitting off their channel vector.
struct ThreadSplit {
  FastDivisor first, second, third;
};

template <typename T, int kWindow, int kStride>
__global__ void nchw_rows_kernel(const T* __restrict__ input, const T* __restrict__ weight,
                                 const T* __restrict__ bias, T* __restrict__ output,
                                 ConvGeometry g, ThreadSplit split, int total) {
  static_assert(kWindow > 0);
  using Acc = acc_t<T>;
  constexpr int kCount = kOuts<kWindow>;
  constexpr int kCols = (kCount - 1) * kStride + kWindow;
  const int in_h = static_cast<int>(g.in_h), in_w = static_cast<int>(g.in_w);
  const int out_h = static_cast<int>(g.out_h), out_w = static_cast<int>(g.out_w);
  const int multiplier = static_cast<int>(g.out_channels_per_group());
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const auto [row, segment] = split.first.divmod(i);
    const auto [plane, oh] = split.second.divmod(row);
    const auto [n, k] = split.third.divmod(plane);
    const T* in_plane = input + (int64_t{n} * g.in_channels + k / multiplier) * in_h * in_w;
    const T* filter = weight + k * kWindow * kWindow;
    const int ow0 = segment * kCount;
    const int iw0 = ow0 * kStride - static_cast<int>(g.pad_w);
    Acc acc[kCount];
#pragma unroll
    for (int q = 0; q < kCount; ++q) acc[q] = bias ? to_acc(bias[k]) : Acc(0);
#pragma unroll
    for (int r = 0; r < kWindow; ++r) {
      const int ih = oh * kStride - static_cast<int>(g.pad_h) + r;
      if (ih < 0 || ih >= in_h) continue;
      const T* in_row = in_plane + int64_t{ih} * in_w;
      Acc x[kCols];
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        const int iw = iw0 + j;
        x[j] = iw >= 0 && iw < in_w ? to_acc(in_row[iw]) : Acc(0);
      }
#pragma unroll
      for (int s = 0; s < kWindow; ++s) {
        const Acc w = to_acc(filter[r * kWindow + s]);
#pragma unroll
        for (int q = 0; q < kCount; ++q) acc[q] += x[q * kStride + s] * w;
      }
    }
    T* out_row = output + (int64_t{plane} * out_h + oh) * out_w;
#pragma unroll
    for (int q = 0; q < kCount; ++q)
      if (ow0 + q < out_w) out_row[ow0 + q] = from_acc<T>(acc[q]);
  }
}

template <typename T, int kWindow, int kStride>
__global__ void channels_last_kernel(const T* __restrict__ input,
                                     const T* __restrict__ weight_rsc,
                                     const T* __restrict__ bias, T* __restrict__ output,
                                     ConvGeometry g, ThreadSplit split, int total) {
  using V = Vec16<T>;
  using Acc = acc_t<T>;
  constexpr bool kFixed = kWindow > 0;
  constexpr int kCount = kOuts<kWindow>;
  const int kernel_h = kFixed ? kWindow : static_cast<int>(g.kernel_h);
  const int kernel_w = kFixed ? kWindow : static_cast<int>(g.kernel_w);
  const int stride_h = kFixed ? kStride : static_cast<int>(g.stride_h);
  const int stride_w = kFixed ? kStride : static_cast<int>(g.stride_w);
  const int dilation_h = kFixed ? 1 : static_cast<int>(g.dilation_h);
  const int dilation_w = kFixed ? 1 : static_cast<int>(g.dilation_w);
  const int in_h = static_cast<int>(g.in_h), in_w = static_cast<int>(g.in_w);
  const int out_h = static_cast<int>(g.out_h), out_w = static_cast<int>(g.out_w);
  const int channels = static_cast<int>(g.in_channels);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const auto [pixel_segment, vector] = split.first.divmod(i);
    const auto [row, segment] = split.second.divmod(pixel_segment);
    const auto [n, oh] = split.third.divmod(row);
    const int c = vector * V::kSize;
    const int ow0 = segment * kCount;
    Acc acc[kCount][V::kSize];
    V b;
    if (bias) b = *reinterpret_cast<const V*>(bias + c);
#pragma unroll
    for (int q = 0; q < kCount; ++q)
#pragma unroll
      for (int j = 0; j < V::kSize; ++j) acc[q][j] = bias ? to_acc(b.v[j]) : Acc(0);
    const T* image = input + int64_t{n} * in_h * in_w * channels + c;
#pragma unroll
    for (int r = 0; r < kernel_h; ++r) {
      const int ih = oh * stride_h - static_cast<int>(g.pad_h) + r * dilation_h;
      if (ih < 0 || ih >= in_h) continue;
#pragma unroll
      for (int s = 0; s < kernel_w; ++s) {
        const V w = *reinterpret_cast<const V*>(weight_rsc + (r * kernel_w + s) * channels + c);
#pragma unroll
        for (int q = 0; q < kCount; ++q) {
          const int iw = (ow0 + q) * stride_w - static_cast<int>(g.pad_w) + s * dilation_w;
          if (iw < 0 || iw >= in_w) continue;
          const V x = *reinterpret_cast<const V*>(image + (int64_t{ih} * in_w + iw) * channels);
#pragma unroll
          for (int j = 0; j < V::kSize; ++j) acc[q][j] += to_acc(x.v[j]) * to_acc(w.v[j]);
        }
      }
    }
#pragma unroll
    for (int q = 0; q < kCount; ++q) {
      if (ow0 + q >= out_w) break;
      V out;
#pragma unroll
      for (int j = 0; j < V::kSize; ++j) out.v[j] = from_acc<T>(acc[q][j]);
      *reinterpret_cast<V*>(output + ((int64_t{n} * out_h + oh) * out_w + ow0 + q) * channels + c) = out;
    }
  }
}

int segments_of(const ConvGeometry& g, int outs) {
  return static_cast<int>((g.out_w + outs - 1) / outs);
}

}  // namespace

bool depthwise_nchw_fits(const ConvGeometry& g, int acc_bytes) {
  if (has_compiled_shape(g) && g.batch * g.out_channels * g.out_h * segments_of(g, 4) <= kMaxThreads &&
      g.batch * g.in_channels * g.in_h * g.in_w < (int64_t{1} << 31)) {
    return true;
  }
  const int64_t tiles = ((g.out_h + kTileH - 1) / kTileH) * ((g.out_w + kTileW - 1) / kTileW);
  return tiled_shared_bytes(g, acc_bytes) <= kMaxSharedBytes && tiles <= 65535 &&
         g.batch * g.out_channels < (int64_t{1} << 31) && g.in_h * g.in_w < (int64_t{1} << 31);
}

bool depthwise_channels_last_fits(const ConvGeometry& g, int element_bytes) {
  const int64_t vectors = g.in_channels / (16 / element_bytes);
  return g.batch * g.out_h * g.out_w * vectors <= kMaxThreads &&
         g.in_h * g.in_w * g.in_channels < (int64_t{1} << 31) &&
         g.kernel_h * g.kernel_w * g.in_channels < (int64_t{1} << 31);
}

template <typename T>
cudaError_t depthwise_conv2d_forward_nchw(const T* input, const T* weight, const T* bias,
                                          T* output, const ConvGeometry& g, cudaStream_t stream) {
  return with_compiled_shape(g, [&](auto window, auto stride) {
    constexpr int kWindow = decltype(window)::value, kStride = decltype(stride)::value;
    if constexpr (kWindow > 0) {
      const int segments = segments_of(g, kOuts<kWindow>);
      const int64_t total = g.batch * g.out_channels * g.out_h * segments;
      const ThreadSplit split{FastDivisor(segments), FastDivisor(static_cast<uint32_t>(g.out_h)),
                              FastDivisor(static_cast<uint32_t>(g.out_channels))};
      launch_kernel(nchw_rows_kernel<T, kWindow, kStride>, blocks_for(total), kThreads, 0, stream,
                    input, weight, bias, output, g, split, static_cast<int>(total));
    } else {
      const int tiles_w = static_cast<int>((g.out_w + kTileW - 1) / kTileW);
      const int tiles_h = static_cast<int>((g.out_h + kTileH - 1) / kTileH);
      const dim3 grid(static_cast<unsigned int>(g.batch * g.out_channels),
                      static_cast<unsigned int>(tiles_w * tiles_h));
      const size_t shared_bytes = tiled_shared_bytes(g, sizeof(acc_t<T>));
      launch_kernel(tiled_nchw_kernel<T>, grid, dim3(kThreadsX, kThreadsY), shared_bytes, stream,
                    input, weight, bias, output, g, tiles_w);
    }
    return cudaGetLastError();
  });
}

template <typename T>
cudaError_t depthwise_conv2d_forward_channels_last(const T* input, const T* weight_rsc,
                                                   const T* bias, T* output, const ConvGeometry& g,
                                                   cudaStream_t stream) {
  return with_compiled_shape(g, [&](auto window, auto stride) {
    constexpr int kWindow = decltype(window)::value, kStride = decltype(stride)::value;
    const int segments = segments_of(g, kOuts<kWindow>);
    const int64_t vectors = g.in_channels / Vec16<T>::kSize;
    const int64_t total = g.batch * g.out_h * segments * vectors;
    const ThreadSplit split{FastDivisor(static_cast<uint32_t>(vectors)), FastDivisor(segments),
                            FastDivisor(static_cast<uint32_t>(g.out_h))};
    launch_kernel(channels_last_kernel<T, kWindow, kStride>, blocks_for(total), kThreads, 0, stream,
                  input, weight_rsc, bias, output, g, split, static_cast<int>(total));
    return cudaGetLastError();
  });
}

#define INSTANTIATE(T)                                                                        \
  template cudaError_t depthwise_conv2d_forward_nchw<T>(const T*, const T*, const T*, T*,    \
                                                        const ConvGeometry&, cudaStream_t);  \
  template cudaError_t depthwise_conv2d_forward_channels_last<T>(                            \
      const T*, const T*, const T*, T*, const ConvGeometry&, cudaStream_t);
CLASSIC_OPS_FOR_EACH_CUDA_TYPE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace classic_ops::cuda
