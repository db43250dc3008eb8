// Max-pooling on CUDA over NCHW or channels_last tensors, indexed by strides. Consecutive
// threads take consecutive memory: W fastest for NCHW, C fastest for channels_last, where
// a thread takes 16 bytes of channels when they divide evenly (vector loads and stores).
// Contiguous NCHW tensors find a thread's output with two divisions by launch constants
// (FastDivisor) rather than the four of the strided kernel, which cost more than the loads
// of a 2x2 window (fp32 NCHW pools ran at 0.65x of PyTorch's on an H200 so); 2x2 windows
// with stride 2 that halve the plane exactly (VGG-16's) take four outputs of a row per
// thread, in vector loads and stores. The channels_last vector kernel divides by launch
// constants too (it took four 64-bit divisions a thread). Every forward kernel is compiled
// with and without indices, so that inference tracks no argmax it would not write. The
// backward pass gathers (each input element sums the outputs whose argmax it is), so it
// needs no atomics and its sum is deterministic. NaN wins, as in PyTorch. The strided
// kernels index in 32 bits wherever the tensors allow.
#include <type_traits>

#include "device_math.cuh"
#include "hardware.cuh"
#include "launchers.h"

namespace classic_ops::cuda {
namespace {

// Element strides narrowed to Index (see unravel).
template <typename Index>
struct StridesOf {
  Index n, c, h, w;
  explicit StridesOf(const Strides4& s)
      : n(static_cast<Index>(s.n)), c(static_cast<Index>(s.c)), h(static_cast<Index>(s.h)),
        w(static_cast<Index>(s.w)) {}
  __device__ __forceinline__ Index at(Index ni, Index ci, Index hi, Index wi) const {
    return ni * n + ci * c + hi * h + wi * w;
  }
};

// The pooling geometry narrowed to Index.
template <typename Index>
struct PoolShape {
  Index channels, in_h, in_w, out_h, out_w;
  Index kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  explicit PoolShape(const PoolGeometry& g)
      : channels(g.channels), in_h(g.in_h), in_w(g.in_w), out_h(g.out_h), out_w(g.out_w),
        kernel_h(g.kernel_h), kernel_w(g.kernel_w), stride_h(g.stride_h), stride_w(g.stride_w),
        pad_h(g.pad_h), pad_w(g.pad_w), dilation_h(g.dilation_h), dilation_w(g.dilation_w) {}
};

// Whether window element v takes the place of the best so far: a larger one, or NaN (NaN
// wins, the last of them; of equal maxima the first stays), as in PyTorch.
template <typename Acc>
__device__ __forceinline__ bool replaces(Acc v, Acc best) {
  // v != v rather than isnan(v), which nvcc compiled to a boolean materialized, sign-extended
  // and tested again: 10 instructions an element instead of 3.
  return v > best || v != v;
}

// The largest element of output (oh, ow)'s window in a plane whose element (h, w) is at
// in_plane[h * row_stride + w * col_stride] (NaN wins), and its index h * in_w + w.
template <typename T, typename Index>
struct WindowMax {
  acc_t<T> value;
  Index at;
};

template <typename T, typename Index>
__device__ __forceinline__ WindowMax<T, Index> window_max(const T* in_plane, Index row_stride,
                                                          Index col_stride, Index oh, Index ow,
                                                          const PoolShape<Index>& g) {
  Index h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
  while (h0 < 0) h0 += g.dilation_h;
  while (w0 < 0) w0 += g.dilation_w;
  const Index h_end = min(oh * g.stride_h - g.pad_h + (g.kernel_h - 1) * g.dilation_h + 1, g.in_h);
  const Index w_end = min(ow * g.stride_w - g.pad_w + (g.kernel_w - 1) * g.dilation_w + 1, g.in_w);
  WindowMax<T, Index> best{-INFINITY, h0 * g.in_w + w0};
  for (Index ih = h0; ih < h_end; ih += g.dilation_h) {
    for (Index iw = w0; iw < w_end; iw += g.dilation_w) {
      const acc_t<T> v = to_acc(in_plane[ih * row_stride + iw * col_stride]);
      if (replaces(v, best.value)) best = {v, ih * g.in_w + iw};
    }
  }
  return best;
}

template <typename T, typename Index, bool kIndices>
__global__ void forward_kernel(const T* __restrict__ input, StridesOf<Index> in_strides,
                               T* __restrict__ output, int64_t* __restrict__ indices,
                               StridesOf<Index> out_strides, bool channels_last, Index total,
                               PoolShape<Index> g) {
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < total;
       i += Index(gridDim.x) * blockDim.x) {
    const CoordOf<Index> o = unravel(i, g.channels, g.out_h, g.out_w, channels_last);
    const WindowMax<T, Index> best = window_max<T, Index>(
        input + in_strides.at(o.n, o.c, 0, 0), in_strides.h, in_strides.w, o.h, o.w, g);
    const Index out_at = out_strides.at(o.n, o.c, o.h, o.w);
    output[out_at] = from_acc<T>(best.value);
    if constexpr (kIndices) indices[out_at] = best.at;
  }
}

// Contiguous NCHW input, output and indices, every index below 2^30: output i is
// (plane, oh, ow) with i = (plane * out_h + oh) * out_w + ow.
template <typename T, bool kIndices>
__global__ void contiguous_nchw_kernel(const T* __restrict__ input, T* __restrict__ output,
                                       int64_t* __restrict__ indices, int total,
                                       PoolShape<int> g, FastDivisor by_out_w,
                                       FastDivisor by_out_h) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const auto [row, ow] = by_out_w.divmod(i);
    const auto [plane, oh] = by_out_h.divmod(row);
    const WindowMax<T, int> best =
        window_max<T, int>(input + plane * g.in_h * g.in_w, g.in_w, 1, oh, ow, g);
    output[i] = from_acc<T>(best.value);
    if constexpr (kIndices) indices[i] = best.at;
  }
}

// channels_last with 16 bytes of channels per thread: one vector load per window tap.
// Output vector i is (image, row, column, vector) with i = ((n * out_h + oh) * out_w + ow)
// * vectors + vector, found by divisions by launch constants (FastDivisor where Index is
// 32-bit).
template <typename T, typename Index, bool kIndices>
__global__ void vector_channels_last_kernel(const T* __restrict__ input, T* __restrict__ output,
                                            int64_t* __restrict__ indices, PoolShape<Index> g,
                                            Index total, LaunchDivisor<Index> by_vectors,
                                            LaunchDivisor<Index> by_out_w,
                                            LaunchDivisor<Index> by_out_h) {
  using V = Vec16<T>;
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < total;
       i += Index(gridDim.x) * blockDim.x) {
    const auto [pixel, vector] = by_vectors.divmod(i);
    const auto [row, ow] = by_out_w.divmod(pixel);
    const auto [n, oh] = by_out_h.divmod(row);
    const Index c = vector * V::kSize;
    Index h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
    while (h0 < 0) h0 += g.dilation_h;
    while (w0 < 0) w0 += g.dilation_w;
    const Index h_end = min(oh * g.stride_h - g.pad_h + (g.kernel_h - 1) * g.dilation_h + 1, g.in_h);
    const Index w_end = min(ow * g.stride_w - g.pad_w + (g.kernel_w - 1) * g.dilation_w + 1, g.in_w);
    const T* image = input + n * (g.in_h * g.in_w * g.channels) + c;
    acc_t<T> best[V::kSize];
    Index best_at[V::kSize];
#pragma unroll
    for (int j = 0; j < V::kSize; ++j) {
      best[j] = -INFINITY;
      best_at[j] = h0 * g.in_w + w0;
    }
    for (Index ih = h0; ih < h_end; ih += g.dilation_h) {
      for (Index iw = w0; iw < w_end; iw += g.dilation_w) {
        const V x = *reinterpret_cast<const V*>(image + (ih * g.in_w + iw) * g.channels);
#pragma unroll
        for (int j = 0; j < V::kSize; ++j) {
          const acc_t<T> v = to_acc(x.v[j]);
          if (replaces(v, best[j])) {
            best[j] = v;
            if constexpr (kIndices) best_at[j] = ih * g.in_w + iw;
          }
        }
      }
    }
    V out;
#pragma unroll
    for (int j = 0; j < V::kSize; ++j) out.v[j] = from_acc<T>(best[j]);
    *reinterpret_cast<V*>(output + pixel * g.channels + c) = out;
    if constexpr (kIndices) {
#pragma unroll
      for (int j = 0; j < V::kSize; ++j) indices[pixel * g.channels + c + j] = best_at[j];
    }
  }
}

template <typename T, typename Index>
__global__ void grad_input_kernel(const T* __restrict__ grad_output,
                                  const int64_t* __restrict__ indices,
                                  StridesOf<Index> out_strides, T* __restrict__ grad_input,
                                  StridesOf<Index> in_strides, bool channels_last, Index total,
                                  PoolShape<Index> g) {
  const Index extent_h = (g.kernel_h - 1) * g.dilation_h + 1;
  const Index extent_w = (g.kernel_w - 1) * g.dilation_w + 1;
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < total;
       i += Index(gridDim.x) * blockDim.x) {
    const CoordOf<Index> x = unravel(i, g.channels, g.in_h, g.in_w, channels_last);
    // Windows that can cover (x.h, x.w); the index comparison picks the right ones.
    const Index oh_begin = x.h + g.pad_h < extent_h ? 0 : (x.h + g.pad_h - extent_h) / g.stride_h + 1;
    const Index ow_begin = x.w + g.pad_w < extent_w ? 0 : (x.w + g.pad_w - extent_w) / g.stride_w + 1;
    const Index oh_end = min((x.h + g.pad_h) / g.stride_h + 1, g.out_h);
    const Index ow_end = min((x.w + g.pad_w) / g.stride_w + 1, g.out_w);
    const int64_t self = x.h * g.in_w + x.w;
    acc_t<T> acc = 0;
    for (Index oh = oh_begin; oh < oh_end; ++oh) {
      for (Index ow = ow_begin; ow < ow_end; ++ow) {
        const Index at = out_strides.at(x.n, x.c, oh, ow);
        if (indices[at] == self) acc += to_acc(grad_output[at]);
      }
    }
    grad_input[in_strides.at(x.n, x.c, x.h, x.w)] = from_acc<T>(acc);
  }
}

// Contiguous NCHW, 2x2 windows, stride 2, no padding or dilation, in_h = 2 out_h,
// in_w = 2 out_w, out_w a multiple of 4, every index below 2^30, input aligned to 8
// elements, output to 4 and indices to 4 int64: thread i takes outputs 4i to 4i + 3, of
// output row `row` = (plane * out_h + oh), which read input rows 2 row and 2 row + 1.
// The window's elements are taken in the strided kernel's order (see replaces).
template <typename T, bool kIndices>
__global__ void halving_nchw_kernel(const T* __restrict__ input, T* __restrict__ output,
                                    int64_t* __restrict__ indices, int total, int in_w,
                                    FastDivisor by_segments, FastDivisor by_out_h) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const auto [row, segment] = by_segments.divmod(i);
    const T* upper_row = input + 2 * row * in_w + segment * 8;
    const Vector<T, 8> upper = *reinterpret_cast<const Vector<T, 8>*>(upper_row);
    const Vector<T, 8> lower = *reinterpret_cast<const Vector<T, 8>*>(upper_row + in_w);
    Vector<T, 4> out;
    int tap[4];  // 0-3: the window's (0, 0), (0, 1), (1, 0), (1, 1)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const acc_t<T> window[4] = {to_acc(upper.v[2 * q]), to_acc(upper.v[2 * q + 1]),
                                  to_acc(lower.v[2 * q]), to_acc(lower.v[2 * q + 1])};
      acc_t<T> best = -INFINITY;
      tap[q] = 0;
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        if (replaces(window[t], best)) {
          best = window[t];
          tap[q] = t;
        }
      }
      out.v[q] = from_acc<T>(best);
    }
    *reinterpret_cast<Vector<T, 4>*>(output + 4 * i) = out;
    if constexpr (kIndices) {
      const int oh = by_out_h.divmod(row).remainder;
      const int64_t first = int64_t{2 * oh} * in_w + segment * 8;
      Vector<int64_t, 4> at;
#pragma unroll
      for (int q = 0; q < 4; ++q) at.v[q] = first + 2 * q + (tap[q] & 1) + (tap[q] >> 1) * in_w;
      *reinterpret_cast<Vector<int64_t, 4>*>(indices + 4 * i) = at;
    }
  }
}

// int32_t indexing when every element index (and a grid stride past it) fits.
bool fits_int32(int64_t elements) { return elements < (int64_t{1} << 30); }

bool is_contiguous_nchw(const Strides4& s, int64_t channels, int64_t height, int64_t width) {
  return s.w == 1 && s.h == width && s.c == height * width && s.n == channels * height * width;
}

bool aligned_to(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

template <typename T>
bool halves_with_vectors(const T* input, const T* output, const int64_t* indices,
                         const PoolGeometry& g) {
  return g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 &&
         g.pad_h == 0 && g.pad_w == 0 && g.dilation_h == 1 && g.dilation_w == 1 &&
         g.in_h == 2 * g.out_h && g.in_w == 2 * g.out_w && g.out_w % 4 == 0 &&
         aligned_to(input, 8 * sizeof(T)) && aligned_to(output, 4 * sizeof(T)) &&
         (indices == nullptr || aligned_to(indices, 4 * sizeof(int64_t)));
}

// Whether a forward pool indexes its elements in 32 bits: its input and output both fit.
bool narrow_forward(const PoolGeometry& g) {
  return fits_int32(g.batch * g.channels * g.in_h * g.in_w) &&
         fits_int32(g.batch * g.channels * g.out_h * g.out_w);
}

// Calls launch(Index{}, std::bool_constant<indices != nullptr>{}) with Index int where
// `narrow`, else int64_t: the forward kernels are compiled with and without indices, so
// that inference tracks no argmax it would not write.
template <class Launch>
void with_index_kinds(bool narrow, const int64_t* indices, Launch&& launch) {
  auto with_indices = [&](auto index) {
    if (indices) {
      launch(index, std::true_type{});
    } else {
      launch(index, std::false_type{});
    }
  };
  if (narrow) {
    with_indices(int32_t{});
  } else {
    with_indices(int64_t{});
  }
}

}  // namespace

template <typename T>
cudaError_t max_pool2d_forward(const T* input, Strides4 in_strides, T* output, int64_t* indices,
                               Strides4 out_strides, bool channels_last, const PoolGeometry& g,
                               cudaStream_t stream) {
  const int64_t total = g.batch * g.channels * g.out_h * g.out_w;
  const bool narrow = narrow_forward(g);
  const bool contiguous_nchw = narrow && !channels_last &&
                               is_contiguous_nchw(in_strides, g.channels, g.in_h, g.in_w) &&
                               is_contiguous_nchw(out_strides, g.channels, g.out_h, g.out_w);
  const bool halving = contiguous_nchw && halves_with_vectors(input, output, indices, g);
  with_index_kinds(narrow, indices, [&](auto index, auto with_indices) {
    using Index = decltype(index);
    constexpr bool kIndices = decltype(with_indices)::value;
    if (halving) {
      launch_kernel(halving_nchw_kernel<T, kIndices>, blocks_for(total / 4), kThreads, 0, stream,
                    input, output, indices, static_cast<int>(total / 4), static_cast<int>(g.in_w),
                    FastDivisor(static_cast<uint32_t>(g.out_w / 4)),
                    FastDivisor(static_cast<uint32_t>(g.out_h)));
    } else if (contiguous_nchw) {
      launch_kernel(contiguous_nchw_kernel<T, kIndices>, blocks_for(total), kThreads, 0, stream,
                    input, output, indices, static_cast<int>(total), PoolShape<int>(g),
                    FastDivisor(static_cast<uint32_t>(g.out_w)),
                    FastDivisor(static_cast<uint32_t>(g.out_h)));
    } else {
      launch_kernel(forward_kernel<T, Index, kIndices>, blocks_for(total), kThreads, 0, stream,
                    input, StridesOf<Index>(in_strides), output, indices,
                    StridesOf<Index>(out_strides), channels_last, static_cast<Index>(total),
                    PoolShape<Index>(g));
    }
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t max_pool2d_forward_channels_last(const T* input, T* output, int64_t* indices,
                                             const PoolGeometry& g, cudaStream_t stream) {
  const int64_t vectors = g.channels / Vec16<T>::kSize;
  const int64_t total = g.batch * g.out_h * g.out_w * vectors;
  with_index_kinds(narrow_forward(g), indices, [&](auto index, auto with_indices) {
    using Index = decltype(index);
    launch_kernel(vector_channels_last_kernel<T, Index, decltype(with_indices)::value>,
                  blocks_for(total), kThreads, 0, stream, input, output, indices,
                  PoolShape<Index>(g), static_cast<Index>(total), LaunchDivisor<Index>(vectors),
                  LaunchDivisor<Index>(g.out_w), LaunchDivisor<Index>(g.out_h));
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t max_pool2d_grad_input(const T* grad_output, const int64_t* indices,
                                  Strides4 out_strides, T* grad_input, Strides4 in_strides,
                                  bool channels_last, const PoolGeometry& g, cudaStream_t stream) {
  const int64_t total = g.batch * g.channels * g.in_h * g.in_w;
  auto launch = [&](auto index) {
    using Index = decltype(index);
    launch_kernel(grad_input_kernel<T, Index>, blocks_for(total), kThreads, 0, stream, grad_output,
                  indices, StridesOf<Index>(out_strides), grad_input, StridesOf<Index>(in_strides),
                  channels_last, static_cast<Index>(total), PoolShape<Index>(g));
  };
  if (fits_int32(total) && fits_int32(g.batch * g.channels * g.out_h * g.out_w)) {
    launch(int32_t{});
  } else {
    launch(int64_t{});
  }
  return cudaGetLastError();
}

#define INSTANTIATE(T)                                                                        \
  template cudaError_t max_pool2d_forward<T>(const T*, Strides4, T*, int64_t*, Strides4, bool, \
                                             const PoolGeometry&, cudaStream_t);              \
  template cudaError_t max_pool2d_forward_channels_last<T>(const T*, T*, int64_t*,            \
                                                           const PoolGeometry&, cudaStream_t); \
  template cudaError_t max_pool2d_grad_input<T>(const T*, const int64_t*, Strides4, T*,       \
                                                Strides4, bool, const PoolGeometry&,          \
                                                cudaStream_t);
CLASSIC_OPS_FOR_EACH_CUDA_TYPE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace classic_ops::cuda
