// Depthwise convolution (groups = in_channels): forward with any channel multiplier,
// kernel size, stride and dilation; backward over channels_last tensors (multiplier 1).
//
// The common shapes (square 3x3 and 7x7 windows, stride 1 or 2, no dilation) are compiled
// in: a thread computes several neighbouring outputs, so each input element it loads
// serves several of them, and the loops unroll. The forward kernels take any other window
// at unit strides and dilations the same way, its size read at run time (kWindow = 0,
// kStride = 1): the thread's outputs slide along each input row a column a tap, so each
// column is loaded once (slide_along_row). Other shapes read the same template parameters
// at run time (kWindow = kStride = 0).
//
// NCHW: those shapes run tiles of row segments (8 outputs along each of two rows)
// straight from global memory (L1 serves the overlap between neighbouring threads). Any
// other shape runs in shared-memory tiles: a block copies the input patch under a kTileH x
// kTileW output tile (zero-padded at the border) and the plane's filter into shared
// memory, converted to the accumulation type, so each input element is read from global
// memory once rather than once per tap.
//
// channels_last (multiplier 1): a thread takes 16 bytes of consecutive channels, with
// vector loads; neighbouring threads read neighbouring channels, so every access is
// coalesced. grad_input of a stride-1 convolution is the forward one with the filters
// flipped (the backend's choice); otherwise each input pixel gathers the outputs that read
// it. grad_weight sums over the pixels by blocks of channel vectors and tap groups, split
// over the pixels to fill the device, then adds the splits.
#include <algorithm>
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
  const int in_h = static_cast<int>(g.in_h), in_w = static_cast<int>(g.in_w);
  // Row by row, a thread a column: no division by the patch width per element.
  for (int y = threadIdx.y; y < patch_h; y += kThreadsY) {
    const int ih = ih0 + y;
    const bool row_inside = ih >= 0 && ih < in_h;
    for (int x = threadIdx.x; x < patch_w; x += kThreadsX) {
      const int iw = iw0 + x;
      patch[y * patch_w + x] =
          row_inside && iw >= 0 && iw < in_w ? to_acc(in_plane[int64_t{ih} * in_w + iw]) : Acc(0);
    }
  }
  const int tid = threadIdx.y * kThreadsX + threadIdx.x;
  for (int e = tid; e < taps; e += kThreadsX * kThreadsY) filter[e] = to_acc(weight[k * taps + e]);
  __syncthreads();

  const int ow = ow0 + threadIdx.x;
  if (ow >= g.out_w) return;
  // The thread's output rows threadIdx.y + i * kThreadsY share each filter value read.
  constexpr int kRows = kTileH / kThreadsY;
  const int row_step = static_cast<int>(g.stride_h) * patch_w;  // between output rows
  const int dilation_h = static_cast<int>(g.dilation_h);
  const int dilation_w = static_cast<int>(g.dilation_w);
  const Acc* window = patch + threadIdx.y * row_step + threadIdx.x * static_cast<int>(g.stride_w);
  const Acc initial = bias ? to_acc(bias[k]) : Acc(0);
  Acc acc[kRows];
#pragma unroll
  for (int i = 0; i < kRows; ++i) acc[i] = initial;
  for (int r = 0; r < g.kernel_h; ++r) {
    const Acc* row = window + r * dilation_h * patch_w;
    for (int s = 0; s < g.kernel_w; ++s) {
      const Acc f = filter[r * g.kernel_w + s];
#pragma unroll
      for (int i = 0; i < kRows; ++i) acc[i] += row[i * kThreadsY * row_step + s * dilation_w] * f;
    }
  }
  T* out_plane = output + plane * g.out_h * g.out_w;
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int oh = oh0 + threadIdx.y + i * kThreadsY;
    if (oh < g.out_h) out_plane[int64_t{oh} * g.out_w + ow] = from_acc<T>(acc[i]);
  }
}

// A compile-time window size and stride, or 0 for "read it from the geometry".
template <int kValue>
using Fixed = std::integral_constant<int, kValue>;

// The outputs per thread along a row of the channels_last kernel: several where the window
// is compiled in or slides at unit stride.
template <int kWindow, int kStride>
constexpr int kOuts = kWindow > 0 || kStride == 1 ? 4 : 1;

// Bit j: whether column first + j of a row of `width` lies inside it, for j < columns
// (at most 32).
__device__ __forceinline__ uint32_t columns_inside(int first, int width, int columns) {
  const int begin = max(0, -first), end = min(columns, width - first);
  return begin < end ? (uint32_t{0xffffffff} >> (32 - end)) & ~((1u << begin) - 1) : 0;
}

// Runs a thread's kCount consecutive outputs along one kernel row of `width` taps at unit
// stride: output q reads column s + q at tap s, so each tap needs one new column, column
// s + kCount - 1 (load(column)), into a ring of kCount registers (slot column % kCount).
// The taps go kCount at a time, unrolled, so that every slot index is a constant: no moves
// between registers. step(s, at) then finds output q's column at at(q).
template <int kCount, class Value, class Load, class Step>
__device__ __forceinline__ void slide_along_row(int width, Load&& load, Step&& step) {
  Value ring[kCount];
#pragma unroll
  for (int j = 0; j + 1 < kCount; ++j) ring[j] = load(j);
  for (int s0 = 0; s0 < width; s0 += kCount) {
#pragma unroll
    for (int j = 0; j < kCount; ++j) {
      if (s0 + j >= width) return;
      ring[(j + kCount - 1) % kCount] = load(s0 + j + kCount - 1);
      step(s0 + j, [&](int q) -> const Value& { return ring[(j + q) % kCount]; });
    }
  }
}

// The NCHW row kernel's tile: kRowTile outputs along each of kTileRows output rows a
// thread, so that each input row it loads serves every output of the tile that reads it.
// With 4 outputs of one row a thread, the kernel was bound by instruction issue, not by
// memory: in the sm_90 SASS of the bfloat16 3x3 stride-1 kernel an iteration was 307
// instructions (18 element loads, each with its own bounds tests, for 36 FMAs), about 77 an
// output, where moving its bytes at the H200's copy bandwidth takes the issue time of
// about 33. (At stride 2 the second row still saves a sixth of the instructions per
// output: 5 input rows for 2 output rows instead of 3 for 1.)
constexpr int kRowTile = 8, kTileRows = 2;

// Calls launch(Fixed<window>, Fixed<stride>) with the compiled-in shape that matches g;
// else, for kernels that slide (kSliding), with Fixed<0>, Fixed<1> where g has unit strides
// and dilations; else with Fixed<0> for both.
template <bool kSliding = false, class Launch>
cudaError_t with_compiled_shape(const ConvGeometry& g, Launch&& launch) {
  const bool square = g.kernel_h == g.kernel_w && g.stride_h == g.stride_w &&
                      g.dilation_h == 1 && g.dilation_w == 1;
  if (square && g.kernel_h == 3 && g.stride_h == 1) return launch(Fixed<3>{}, Fixed<1>{});
  if (square && g.kernel_h == 3 && g.stride_h == 2) return launch(Fixed<3>{}, Fixed<2>{});
  if (square && g.kernel_h == 7 && g.stride_h == 1) return launch(Fixed<7>{}, Fixed<1>{});
  if (square && g.kernel_h == 7 && g.stride_h == 2) return launch(Fixed<7>{}, Fixed<2>{});
  if constexpr (kSliding) {
    if (g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1)
      return launch(Fixed<0>{}, Fixed<1>{});
  }
  return launch(Fixed<0>{}, Fixed<0>{});
}

bool has_compiled_shape(const ConvGeometry& g) {
  return with_compiled_shape(g, [](auto window, auto) {
           return decltype(window)::value > 0 ? cudaSuccess : cudaErrorNotSupported;
         }) == cudaSuccess;
}

// Whether the forward kernels run g with several outputs a thread: compiled in or sliding.
bool has_row_shape(const ConvGeometry& g) {
  return with_compiled_shape</*kSliding=*/true>(g, [](auto, auto stride) {
           return decltype(stride)::value > 0 ? cudaSuccess : cudaErrorNotSupported;
         }) == cudaSuccess;
}

// The thread counts below are kept under 2^30, so 32-bit index arithmetic is exact.
constexpr int64_t kMaxThreads = int64_t{1} << 30;

// A thread's flat index split into its row segment and the rest, the rest into its output
// row (NCHW: its group of kTileRows rows) and the rest again, by divisors made on the
// host: NCHW threads take (plane, row group, segment) and then plane into (image,
// channel); channels_last threads take (image, row, segment) after splitting off their
// channel vector.
struct ThreadSplit {
  FastDivisor first, second, third;
};

// The window and stride of a kernel: compiled in (kWindow > 0: square, stride kStride,
// no dilation), the window read from the geometry at unit strides and dilations (kWindow 0,
// kStride 1), or all read from the geometry.
template <int kWindow, int kStride>
struct WindowShape {
  int kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
  __device__ __forceinline__ explicit WindowShape(const ConvGeometry& g) {
    kernel_h = kWindow > 0 ? kWindow : static_cast<int>(g.kernel_h);
    kernel_w = kWindow > 0 ? kWindow : static_cast<int>(g.kernel_w);
    stride_h = kStride > 0 ? kStride : static_cast<int>(g.stride_h);
    stride_w = kStride > 0 ? kStride : static_cast<int>(g.stride_w);
    dilation_h = kStride > 0 ? 1 : static_cast<int>(g.dilation_h);
    dilation_w = kStride > 0 ? 1 : static_cast<int>(g.dilation_w);
  }
};

template <typename T, int kWindow, int kStride>
__global__ void nchw_rows_kernel(const T* __restrict__ input, const T* __restrict__ weight,
                                 const T* __restrict__ bias, T* __restrict__ output,
                                 ConvGeometry g, ThreadSplit split, int total) {
  static_assert(kWindow > 0 || kStride == 1);
  using Acc = acc_t<T>;
  const WindowShape<kWindow, kStride> shape(g);
  const int in_h = static_cast<int>(g.in_h), in_w = static_cast<int>(g.in_w);
  const int out_h = static_cast<int>(g.out_h), out_w = static_cast<int>(g.out_w);
  const int multiplier = static_cast<int>(g.out_channels_per_group());
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const auto [row_group, segment] = split.first.divmod(i);
    const auto [plane, group] = split.second.divmod(row_group);
    const auto [n, k] = split.third.divmod(plane);
    const T* in_plane = input + (int64_t{n} * g.in_channels + k / multiplier) * in_h * in_w;
    // The weight may pass 2^31 elements (a large multiplier times a large window).
    const T* filter = weight + int64_t{k} * shape.kernel_h * shape.kernel_w;
    const int oh0 = group * kTileRows, ow0 = segment * kRowTile;
    const int ih0 = oh0 * shape.stride_h - static_cast<int>(g.pad_h);
    const int iw0 = ow0 * shape.stride_w - static_cast<int>(g.pad_w);
    const Acc initial = bias ? to_acc(bias[k]) : Acc(0);
    Acc acc[kTileRows][kRowTile];
#pragma unroll
    for (int o = 0; o < kTileRows; ++o)
#pragma unroll
      for (int q = 0; q < kRowTile; ++q) acc[o][q] = initial;
    if constexpr (kWindow > 0) {
      constexpr int kCols = (kRowTile - 1) * kStride + kWindow;
      constexpr int kInputRows = (kTileRows - 1) * kStride + kWindow;
      const uint32_t inside = columns_inside(iw0, in_w, kCols);  // the same for every row
#pragma unroll
      for (int e = 0; e < kInputRows; ++e) {
        const int ih = ih0 + e;
        if (ih < 0 || ih >= in_h) continue;
        // Column j at a constant offset from one index, so the loads need no address
        // arithmetic each.
        const int64_t first_column = int64_t{ih} * in_w + iw0;
        Acc x[kCols];
#pragma unroll
        for (int j = 0; j < kCols; ++j)
          x[j] = inside >> j & 1 ? to_acc(in_plane[first_column + j]) : Acc(0);
#pragma unroll
        for (int o = 0; o < kTileRows; ++o) {
          const int r = e - o * kStride;  // the kernel row through which output row o reads it
          if (r < 0 || r >= kWindow) continue;
#pragma unroll
          for (int s = 0; s < kWindow; ++s) {
            const Acc w = to_acc(filter[r * kWindow + s]);
#pragma unroll
            for (int q = 0; q < kRowTile; ++q) acc[o][q] += x[q * kStride + s] * w;
          }
        }
      }
    } else {
      const int kernel_h = shape.kernel_h, kernel_w = shape.kernel_w;
      for (int e = 0; e < kTileRows - 1 + kernel_h; ++e) {
        const int ih = ih0 + e;
        if (ih < 0 || ih >= in_h) continue;
        const T* in_row = in_plane + int64_t{ih} * in_w;
        // Output row o reads this input row through kernel row e - o, where there is one.
        bool reads[kTileRows];
        const T* taps[kTileRows];
#pragma unroll
        for (int o = 0; o < kTileRows; ++o) {
          reads[o] = e - o >= 0 && e - o < kernel_h;
          taps[o] = filter + (reads[o] ? e - o : 0) * kernel_w;
        }
        slide_along_row<kRowTile, Acc>(
            kernel_w,
            [&](int column) {
              const int iw = iw0 + column;
              return static_cast<unsigned>(iw) < static_cast<unsigned>(in_w) ? to_acc(in_row[iw])
                                                                              : Acc(0);
            },
            [&](int s, auto&& at) {
#pragma unroll
              for (int o = 0; o < kTileRows; ++o) {
                if (!reads[o]) continue;
                const Acc w = to_acc(taps[o][s]);
#pragma unroll
                for (int q = 0; q < kRowTile; ++q) acc[o][q] += at(q) * w;
              }
            });
      }
    }
#pragma unroll
    for (int o = 0; o < kTileRows; ++o) {
      if (oh0 + o >= out_h) break;
      T* out_row = output + (int64_t{plane} * out_h + oh0 + o) * out_w;
#pragma unroll
      for (int q = 0; q < kRowTile; ++q)
        if (ow0 + q < out_w) out_row[ow0 + q] = from_acc<T>(acc[o][q]);
    }
  }
}

template <typename T, int kWindow, int kStride>
__global__ void channels_last_kernel(const T* __restrict__ input,
                                     const T* __restrict__ weight_rsc,
                                     const T* __restrict__ bias, T* __restrict__ output,
                                     ConvGeometry g, ThreadSplit split, int total) {
  using V = Vec16<T>;
  using Acc = acc_t<T>;
  constexpr int kCount = kOuts<kWindow, kStride>;
  const WindowShape<kWindow, kStride> shape(g);
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
    const int iw0 = ow0 * shape.stride_w - static_cast<int>(g.pad_w);
#pragma unroll
    for (int r = 0; r < shape.kernel_h; ++r) {
      const int ih = oh * shape.stride_h - static_cast<int>(g.pad_h) + r * shape.dilation_h;
      if (ih < 0 || ih >= in_h) continue;
      const T* row = image + int64_t{ih} * in_w * channels;
      if constexpr (kWindow > 0) {
        // Each input column of the segment's window once (zero outside the row), for every
        // output that reads it: 6 vector loads a row for a 3x3 window at stride 1, not 12.
        constexpr int kCols = (kCount - 1) * kStride + kWindow;
        const uint32_t inside = columns_inside(iw0, in_w, kCols);
        V x[kCols];
#pragma unroll
        for (int col = 0; col < kCols; ++col) {
          x[col] = inside >> col & 1
                       ? *reinterpret_cast<const V*>(row + int64_t{iw0 + col} * channels)
                       : V::zeros();
        }
#pragma unroll
        for (int s = 0; s < kWindow; ++s) {
          const V w = *reinterpret_cast<const V*>(weight_rsc + (r * kWindow + s) * channels + c);
#pragma unroll
          for (int q = 0; q < kCount; ++q)
#pragma unroll
            for (int j = 0; j < V::kSize; ++j)
              acc[q][j] += to_acc(x[q * kStride + s].v[j]) * to_acc(w.v[j]);
        }
      } else if constexpr (kStride == 1) {
        const T* taps = weight_rsc + r * shape.kernel_w * channels + c;
        const T* first = row + int64_t{iw0} * channels;  // only columns inside are read
        slide_along_row<kCount, V>(
            shape.kernel_w,
            [&](int column) {
              return static_cast<unsigned>(iw0 + column) < static_cast<unsigned>(in_w)
                         ? *reinterpret_cast<const V*>(first + column * channels)
                         : V::zeros();
            },
            [&](int s, auto&& at) {
              const V w = *reinterpret_cast<const V*>(taps + s * channels);
#pragma unroll
              for (int q = 0; q < kCount; ++q)
#pragma unroll
                for (int j = 0; j < V::kSize; ++j)
                  acc[q][j] += to_acc(at(q).v[j]) * to_acc(w.v[j]);
            });
      } else {
        static_assert(kCount == 1);
#pragma unroll
        for (int s = 0; s < shape.kernel_w; ++s) {
          const int iw = iw0 + s * shape.dilation_w;
          if (iw < 0 || iw >= in_w) continue;
          const V w =
              *reinterpret_cast<const V*>(weight_rsc + (r * shape.kernel_w + s) * channels + c);
          const V x = *reinterpret_cast<const V*>(row + int64_t{iw} * channels);
#pragma unroll
          for (int j = 0; j < V::kSize; ++j) acc[0][j] += to_acc(x.v[j]) * to_acc(w.v[j]);
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

// grad_input, channels_last, multiplier 1, gathered: a thread takes 16 bytes of consecutive
// channels of one input pixel (threads split as (image, row, column) after the vector) and
// sums, over the taps through which some output reads it, grad_output times the tap's
// weight (weight_rsc, (R, S, C)). No atomics, and each sum in a fixed order.
template <typename T, int kWindow, int kStride>
__global__ void channels_last_grad_input_kernel(const T* __restrict__ grad_output,
                                                const T* __restrict__ weight_rsc,
                                                T* __restrict__ grad_input, ConvGeometry g,
                                                ThreadSplit split, int total) {
  using V = Vec16<T>;
  using Acc = acc_t<T>;
  const WindowShape<kWindow, kStride> shape(g);
  const int out_h = static_cast<int>(g.out_h), out_w = static_cast<int>(g.out_w);
  const int pad_h = static_cast<int>(g.pad_h), pad_w = static_cast<int>(g.pad_w);
  const int channels = static_cast<int>(g.in_channels);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const auto [pixel, vector] = split.first.divmod(i);
    const auto [row, iw] = split.second.divmod(pixel);
    const auto [n, ih] = split.third.divmod(row);
    const int c = vector * V::kSize;
    const T* image = grad_output + int64_t{n} * out_h * out_w * channels + c;
    Acc acc[V::kSize] = {};
#pragma unroll
    for (int r = 0; r < shape.kernel_h; ++r) {
      const int oh = reading_output(ih, r, shape.stride_h, pad_h, shape.dilation_h, out_h);
      if (oh < 0) continue;
#pragma unroll
      for (int s = 0; s < shape.kernel_w; ++s) {
        const int ow = reading_output(iw, s, shape.stride_w, pad_w, shape.dilation_w, out_w);
        if (ow < 0) continue;
        const V d = *reinterpret_cast<const V*>(image + (int64_t{oh} * out_w + ow) * channels);
        const V k =
            *reinterpret_cast<const V*>(weight_rsc + (r * shape.kernel_w + s) * channels + c);
#pragma unroll
        for (int j = 0; j < V::kSize; ++j) acc[j] += to_acc(d.v[j]) * to_acc(k.v[j]);
      }
    }
    V out;
#pragma unroll
    for (int j = 0; j < V::kSize; ++j) out.v[j] = from_acc<T>(acc[j]);
    *reinterpret_cast<V*>(grad_input + int64_t{pixel} * channels + c) = out;
  }
}

// grad_weight, channels_last, multiplier 1, first part: block (x, y, z) sums grad_output
// times the input under each of the kTaps taps of tap group z (a kernel row of a
// compiled-in window, else one tap; kernel row z / groups_per_row) over the output pixels
// of split y, for the 16-byte channel vectors x * vectors_per_block on. Its threads are
// (pixel lane, vector) with the vector fastest, so a warp reads whole runs of pixels; each
// lane takes every lanes-th pixel of the split, and the block adds its lanes' sums in
// shared memory, in a fixed order, into partials[y][channel][tap]. sum_partials_kernel then
// adds the splits in order.
template <typename T, int kWindow, int kStride>
__global__ void __launch_bounds__(kThreads)
    channels_last_grad_weight_kernel(const T* __restrict__ grad_output, const T* __restrict__ input,
                                     float* __restrict__ partials, ConvGeometry g,
                                     FastDivisor out_w_divisor, FastDivisor out_h_divisor,
                                     int vectors_per_block, int pixels_per_split) {
  using V = Vec16<T>;
  constexpr int kTaps = kWindow > 0 ? kWindow : 1;
  __shared__ float sums[kThreads * V::kSize];
  const WindowShape<kWindow, kStride> shape(g);
  const int in_h = static_cast<int>(g.in_h), in_w = static_cast<int>(g.in_w);
  const int channels = static_cast<int>(g.in_channels), taps = shape.kernel_h * shape.kernel_w;
  const int groups_per_row = shape.kernel_w / kTaps;
  const int r = blockIdx.z / groups_per_row, s0 = blockIdx.z % groups_per_row * kTaps;
  const int lanes = kThreads / vectors_per_block;
  const int lane = threadIdx.x / vectors_per_block;
  const int c = (blockIdx.x * vectors_per_block + threadIdx.x % vectors_per_block) * V::kSize;
  const bool active = c < channels;
  const int pixels = static_cast<int>(g.batch * g.out_h * g.out_w);
  const int first = blockIdx.y * pixels_per_split;
  const int end = min(first + pixels_per_split, pixels);

  float acc[kTaps][V::kSize] = {};
  for (int p = first + lane; active && p < end; p += lanes) {
    const auto [row, ow] = out_w_divisor.divmod(p);
    const auto [n, oh] = out_h_divisor.divmod(row);
    const int ih = oh * shape.stride_h - static_cast<int>(g.pad_h) + r * shape.dilation_h;
    if (ih < 0 || ih >= in_h) continue;
    const V d = *reinterpret_cast<const V*>(grad_output + int64_t{p} * channels + c);
    const T* in_row = input + (int64_t{n} * in_h + ih) * in_w * channels + c;
#pragma unroll
    for (int t = 0; t < kTaps; ++t) {
      const int iw = ow * shape.stride_w - static_cast<int>(g.pad_w) + (s0 + t) * shape.dilation_w;
      if (iw < 0 || iw >= in_w) continue;
      const V x = *reinterpret_cast<const V*>(in_row + int64_t{iw} * channels);
#pragma unroll
      for (int j = 0; j < V::kSize; ++j) acc[t][j] += to_acc(d.v[j]) * to_acc(x.v[j]);
    }
  }

  // Per tap: the lanes' sums halved pairwise (lanes is a power of two), lane 0 writing out.
#pragma unroll
  for (int t = 0; t < kTaps; ++t) {
#pragma unroll
    for (int j = 0; j < V::kSize; ++j) sums[threadIdx.x * V::kSize + j] = acc[t][j];
    __syncthreads();
    for (int half = lanes / 2; half > 0; half /= 2) {
      if (lane < half) {
        const int other = (threadIdx.x + half * vectors_per_block) * V::kSize;
#pragma unroll
        for (int j = 0; j < V::kSize; ++j) sums[threadIdx.x * V::kSize + j] += sums[other + j];
      }
      __syncthreads();
    }
    if (lane == 0 && active) {
      float* out = partials + int64_t{blockIdx.y} * channels * taps + r * shape.kernel_w + s0 + t;
#pragma unroll
      for (int j = 0; j < V::kSize; ++j)
        out[int64_t{c + j} * taps] = sums[threadIdx.x * V::kSize + j];
    }
    __syncthreads();
  }
}

int segments_of(const ConvGeometry& g, int outs) {
  return static_cast<int>((g.out_w + outs - 1) / outs);
}

// The NCHW row kernel's groups of kTileRows output rows per plane.
int row_groups_of(const ConvGeometry& g) {
  return static_cast<int>((g.out_h + kTileRows - 1) / kTileRows);
}

}  // namespace

bool depthwise_nchw_fits(const ConvGeometry& g, int acc_bytes) {
  if (has_row_shape(g) &&
      g.batch * g.out_channels * row_groups_of(g) * segments_of(g, kRowTile) <= kMaxThreads &&
      g.batch * g.in_channels * g.in_h * g.in_w < (int64_t{1} << 31)) {
    return true;
  }
  const int64_t tiles = ((g.out_h + kTileH - 1) / kTileH) * ((g.out_w + kTileW - 1) / kTileW);
  return tiled_shared_bytes(g, acc_bytes) <= kMaxSharedBytes && tiles <= 65535 &&
         g.batch * g.out_channels < (int64_t{1} << 31) && g.in_h * g.in_w < (int64_t{1} << 31);
}

bool depthwise_channels_last_fits(const ConvGeometry& g, int element_bytes) {
  // Threads over output pixels (forward, grad_weight) and over input pixels (grad_input).
  const int64_t vectors = g.in_channels / (16 / element_bytes);
  return g.batch * g.out_h * g.out_w * vectors <= kMaxThreads &&
         g.batch * g.in_h * g.in_w * vectors <= kMaxThreads &&
         g.in_h * g.in_w * g.in_channels < (int64_t{1} << 31) &&
         g.kernel_h * g.kernel_w * g.in_channels < (int64_t{1} << 31);
}

template <typename T>
cudaError_t depthwise_conv2d_forward_nchw(const T* input, const T* weight, const T* bias,
                                          T* output, const ConvGeometry& g, cudaStream_t stream) {
  return with_compiled_shape</*kSliding=*/true>(g, [&](auto window, auto stride) {
    constexpr int kWindow = decltype(window)::value, kStride = decltype(stride)::value;
    if constexpr (kStride > 0) {
      const int segments = segments_of(g, kRowTile), row_groups = row_groups_of(g);
      const int64_t total = g.batch * g.out_channels * row_groups * segments;
      const ThreadSplit split{FastDivisor(segments), FastDivisor(row_groups),
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
  return with_compiled_shape</*kSliding=*/true>(g, [&](auto window, auto stride) {
    constexpr int kWindow = decltype(window)::value, kStride = decltype(stride)::value;
    const int segments = segments_of(g, kOuts<kWindow, kStride>);
    const int64_t vectors = g.in_channels / Vec16<T>::kSize;
    const int64_t total = g.batch * g.out_h * segments * vectors;
    const ThreadSplit split{FastDivisor(static_cast<uint32_t>(vectors)), FastDivisor(segments),
                            FastDivisor(static_cast<uint32_t>(g.out_h))};
    launch_kernel(channels_last_kernel<T, kWindow, kStride>, blocks_for(total), kThreads, 0, stream,
                  input, weight_rsc, bias, output, g, split, static_cast<int>(total));
    return cudaGetLastError();
  });
}

namespace {

// The channel vectors of a grad_weight block: the largest power of two up to 32 and up to
// the vectors there are, so that its lanes halve evenly.
int grad_weight_vectors_per_block(const ConvGeometry& g, int element_bytes) {
  const int64_t vectors = g.in_channels / (16 / element_bytes);
  int per_block = 1;
  while (per_block * 2 <= std::min<int64_t>(vectors, 32)) per_block *= 2;
  return per_block;
}

// grad_weight's blocks before splitting the pixels: channel groups x tap groups.
int64_t grad_weight_blocks(const ConvGeometry& g, int element_bytes) {
  const int64_t vectors = g.in_channels / (16 / element_bytes);
  const int per_block = grad_weight_vectors_per_block(g, element_bytes);
  const int64_t taps_per_group = has_compiled_shape(g) ? g.kernel_w : 1;
  return (vectors + per_block - 1) / per_block * (g.kernel_h * g.kernel_w / taps_per_group);
}

}  // namespace

int depthwise_channels_last_grad_weight_splits(const ConvGeometry& g, int element_bytes,
                                               int multiprocessors) {
  // Four blocks per multiprocessor, each lane of a block at least 8 pixels.
  const int64_t lanes = kThreads / grad_weight_vectors_per_block(g, element_bytes);
  const int64_t blocks = grad_weight_blocks(g, element_bytes);
  const int64_t wanted = (4 * int64_t{multiprocessors} + blocks - 1) / blocks;
  const int64_t most = std::max<int64_t>(1, g.batch * g.out_h * g.out_w / (8 * lanes));
  return static_cast<int>(std::max<int64_t>(1, std::min({wanted, most, int64_t{65535}})));
}

template <typename T>
cudaError_t depthwise_conv2d_grad_input_channels_last(const T* grad_output, const T* weight_rsc,
                                                      T* grad_input, const ConvGeometry& g,
                                                      cudaStream_t stream) {
  return with_compiled_shape(g, [&](auto window, auto stride) {
    constexpr int kWindow = decltype(window)::value, kStride = decltype(stride)::value;
    const int64_t vectors = g.in_channels / Vec16<T>::kSize;
    const int64_t total = g.batch * g.in_h * g.in_w * vectors;
    const ThreadSplit split{FastDivisor(static_cast<uint32_t>(vectors)),
                            FastDivisor(static_cast<uint32_t>(g.in_w)),
                            FastDivisor(static_cast<uint32_t>(g.in_h))};
    launch_kernel(channels_last_grad_input_kernel<T, kWindow, kStride>, blocks_for(total), kThreads,
                  0, stream, grad_output, weight_rsc, grad_input, g, split,
                  static_cast<int>(total));
    return cudaGetLastError();
  });
}

template <typename T>
cudaError_t depthwise_conv2d_grad_weight_channels_last(const T* grad_output, const T* input,
                                                       float* partials, int splits, T* grad_weight,
                                                       const ConvGeometry& g, cudaStream_t stream) {
  return with_compiled_shape(g, [&](auto window, auto stride) {
    constexpr int kWindow = decltype(window)::value, kStride = decltype(stride)::value;
    constexpr int kTaps = kWindow > 0 ? kWindow : 1;
    const int per_block = grad_weight_vectors_per_block(g, sizeof(T));
    const int64_t vectors = g.in_channels / Vec16<T>::kSize;
    const int64_t pixels = g.batch * g.out_h * g.out_w;
    const dim3 grid(static_cast<unsigned int>((vectors + per_block - 1) / per_block),
                    static_cast<unsigned int>(splits),
                    static_cast<unsigned int>(g.kernel_h * g.kernel_w / kTaps));
    launch_kernel(channels_last_grad_weight_kernel<T, kWindow, kStride>, grid, kThreads, 0, stream,
                  grad_output, input, partials, g, FastDivisor(static_cast<uint32_t>(g.out_w)),
                  FastDivisor(static_cast<uint32_t>(g.out_h)), per_block,
                  static_cast<int>((pixels + splits - 1) / splits));
    const int64_t size = g.in_channels * g.kernel_h * g.kernel_w;
    launch_kernel(sum_partials_kernel<T>, blocks_for(size), kThreads, 0, stream, partials, splits,
                  size, static_cast<const T*>(nullptr), /*relu=*/false, grad_weight,
                  PixelLayout::rows_of(g.kernel_h * g.kernel_w));
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
// The channels_last kernels move 16-byte vectors: no double.
#define INSTANTIATE(T)                                                \
  template cudaError_t depthwise_conv2d_grad_input_channels_last<T>(  \
      const T*, const T*, T*, const ConvGeometry&, cudaStream_t);     \
  template cudaError_t depthwise_conv2d_grad_weight_channels_last<T>( \
      const T*, const T*, float*, int, T*, const ConvGeometry&, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(__half)
INSTANTIATE(__nv_bfloat16)
#undef INSTANTIATE

}  // namespace classic_ops::cuda
