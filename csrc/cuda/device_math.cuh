// Accumulation types, conversions and small pieces shared by the CUDA kernels: half and
// bfloat16 accumulate in float, double in double.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "launchers.h"

namespace classic_ops::cuda {

template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccType<T>::type;

template <typename T>
__device__ __forceinline__ acc_t<T> to_acc(T v) {
  return static_cast<acc_t<T>>(v);
}
template <>
__device__ __forceinline__ float to_acc<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename Index>
struct CoordOf {
  Index n, c, h, w;
};
using Coord = CoordOf<int64_t>;

// Splits a linear thread index over (n, c, h, w) with W or C varying fastest. Index is
// int64_t, or int32_t where the caller knows every index fits (32-bit division is several
// times cheaper).
template <typename Index>
__device__ __forceinline__ CoordOf<Index> unravel(Index i, Index channels, Index height,
                                                  Index width, bool channels_last) {
  if (channels_last) {
    return {i / (channels * width * height), i % channels, i / (channels * width) % height,
            i / channels % width};
  }
  return {i / (width * height * channels), i / (width * height) % channels, i / width % height,
          i % width};
}

// Division by a divisor fixed for a launch: a multiply-high, an add and a shift instead of
// a division (Granlund and Montgomery's method; PyTorch's IntDivider does the same), exact
// for dividends below 2^31.
class FastDivisor {
 public:
  explicit FastDivisor(uint32_t divisor) : divisor_(divisor) {
    while ((uint64_t{1} << shift_) < divisor) ++shift_;  // 2^(shift - 1) < divisor <= 2^shift
    multiplier_ = static_cast<uint32_t>(
        (uint64_t{1} << 32) * ((uint64_t{1} << shift_) - divisor) / divisor + 1);
  }
  __device__ __forceinline__ uint32_t divide(uint32_t dividend) const {
    return (__umulhi(dividend, multiplier_) + dividend) >> shift_;
  }
  struct QuotientRemainder {
    int quotient, remainder;
  };
  __device__ __forceinline__ QuotientRemainder divmod(int dividend) const {
    const int quotient = static_cast<int>(divide(static_cast<uint32_t>(dividend)));
    return {quotient, dividend - quotient * static_cast<int>(divisor_)};
  }

 private:
  uint32_t divisor_, multiplier_ = 0, shift_ = 0;
};

// Division by a launch constant in a kernel's index type: FastDivisor where indices are
// 32-bit (below 2^30: see its exactness), a division where they are 64-bit.
template <typename Index>
struct LaunchDivisor {
  static_assert(std::is_same_v<Index, int64_t>);
  int64_t divisor;
  explicit LaunchDivisor(int64_t d) : divisor(d) {}
  struct QuotientRemainder {
    int64_t quotient, remainder;
  };
  __device__ __forceinline__ QuotientRemainder divmod(int64_t dividend) const {
    return {dividend / divisor, dividend % divisor};
  }
};
template <>
struct LaunchDivisor<int> : FastDivisor {
  explicit LaunchDivisor(int64_t d) : FastDivisor(static_cast<uint32_t>(d)) {}
};

// kCount consecutive elements, loaded and stored as one vector access (several of 16 bytes
// where larger); the pointer must be aligned to the vector's size.
template <typename T, int kCount>
struct alignas(kCount * sizeof(T)) Vector {
  static constexpr int kSize = kCount;
  T v[kCount];

  __device__ __forceinline__ static Vector zeros() {
    Vector z;
#pragma unroll
    for (int j = 0; j < kCount; ++j) z.v[j] = from_acc<T>(acc_t<T>(0));
    return z;
  }
};
template <typename T>
using Vec16 = Vector<T, 16 / sizeof(T)>;

constexpr int kThreads = 256;
// Grid-stride loops cover the rest; this keeps the grid within every device's limits.
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

inline unsigned int blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// A forward output's value: + bias[k] where there is a bias, then ReLU if asked.
template <typename T>
__device__ __forceinline__ float with_bias_and_relu(float v, const T* bias, int64_t k, bool relu) {
  if (bias != nullptr) v += to_acc(bias[k]);
  if (relu && v < 0) v = 0;  // NaN stays NaN, as in torch.relu
  return v;
}

// Where a kernel writes the `channels` values of its row m (an output pixel, m = (n * height
// + h) * width + w, below 2^31): at the strides of a tensor whose channels are contiguous
// (channels_last, or a window of one such as a stride phase of grad_input), or, where those
// are the dense ones, at m * channels (also any matrix of `channels` columns).
struct PixelLayout {
  int64_t image, row, column;  // the strides' n, h and w
  int64_t channels;
  int height, width;
  bool dense;

  // Rows of `channels` values one after the other.
  static PixelLayout rows_of(int64_t channels) { return {0, 0, channels, channels, 1, 1, true}; }

  // The channels of a pixel contiguous: s.c == 1.
  static PixelLayout pixels(const Strides4& s, int64_t channels, int64_t height, int64_t width) {
    const bool dense = s.w == channels && s.h == width * channels && s.n == height * s.h;
    return {s.n, s.h, s.w, channels, static_cast<int>(height), static_cast<int>(width), dense};
  }

  __device__ __forceinline__ int64_t start(int64_t m) const {
    if (dense) return m * channels;
    const int pixel = static_cast<int>(m), pixel_row = pixel / width;
    return pixel_row / height * image + int64_t{pixel_row % height} * row +
           int64_t{pixel % width} * column;
  }
};

// The sum of the `splits` slices' element i (row i / channels, column i % channels of
// their matrices), added in a fixed order (deterministic), + bias[i % channels] where there
// is a bias, then ReLU if asked, to its place in `result` (laid out as `layout`): the last
// step of the kernels that split a reduction over blocks.
template <typename T>
__global__ void sum_partials_kernel(const float* __restrict__ partials, int splits, int64_t size,
                                    const T* __restrict__ bias, bool relu, T* __restrict__ result,
                                    PixelLayout layout) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < size;
       i += int64_t{gridDim.x} * blockDim.x) {
    float sum = 0;
    for (int s = 0; s < splits; ++s) sum += partials[s * size + i];
    const int64_t column = i % layout.channels;
    const int64_t at = layout.dense ? i : layout.start(i / layout.channels) + column;
    result[at] = from_acc<T>(with_bias_and_relu(sum, bias, column, relu));
  }
}

// Instantiates a launcher template for every supported element type.
#define CLASSIC_OPS_FOR_EACH_CUDA_TYPE(MACRO) \
  MACRO(float)                                \
  MACRO(double)                               \
  MACRO(__half)                               \
  MACRO(__nv_bfloat16)

}  // namespace classic_ops::cuda
