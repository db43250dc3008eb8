// Direct convolution with groups on CUDA: one thread per output (forward), per input
// element (grad_input, as a gather, so no atomics and a deterministic sum), and one block
// per weight element (grad_weight, a block reduction). 64-bit indices throughout.
#include "device_math.cuh"
#include "hardware.cuh"
#include "launchers.h"

namespace classic_ops::cuda {
namespace {

template <typename T>
__global__ void forward_kernel(const T* __restrict__ input, const T* __restrict__ weight,
                               const T* __restrict__ bias, T* __restrict__ output,
                               ConvGeometry g) {
  const int64_t total = g.batch * g.out_channels * g.out_h * g.out_w;
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const Coord o = unravel(i, g.out_channels, g.out_h, g.out_w, /*channels_last=*/false);
    const int64_t n = o.n, k = o.c, oh = o.h, ow = o.w;
    acc_t<T> acc = bias ? to_acc(bias[k]) : acc_t<T>(0);
    for (int64_t c = 0; c < cpg; ++c) {
      const T* in_c = input + (n * g.in_channels + (k / kpg) * cpg + c) * g.in_h * g.in_w;
      const T* w_kc = weight + (k * cpg + c) * g.kernel_h * g.kernel_w;
      for (int64_t r = 0; r < g.kernel_h; ++r) {
        const int64_t ih = oh * g.stride_h - g.pad_h + r * g.dilation_h;
        if (ih < 0 || ih >= g.in_h) continue;
        for (int64_t s = 0; s < g.kernel_w; ++s) {
          const int64_t iw = ow * g.stride_w - g.pad_w + s * g.dilation_w;
          if (iw < 0 || iw >= g.in_w) continue;
          acc += to_acc(in_c[ih * g.in_w + iw]) * to_acc(w_kc[r * g.kernel_w + s]);
        }
      }
    }
    output[i] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void grad_input_kernel(const T* __restrict__ grad_output, const T* __restrict__ weight,
                                  T* __restrict__ grad_input, ConvGeometry g) {
  const int64_t total = g.batch * g.in_channels * g.in_h * g.in_w;
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const Coord x = unravel(i, g.in_channels, g.in_h, g.in_w, /*channels_last=*/false);
    const int64_t n = x.n, ci = x.c, ih = x.h, iw = x.w;
    const int64_t group = ci / cpg, c = ci % cpg;
    acc_t<T> acc = 0;
    for (int64_t k = group * kpg; k < (group + 1) * kpg; ++k) {
      const T* gout_k = grad_output + (n * g.out_channels + k) * g.out_h * g.out_w;
      const T* w_kc = weight + (k * cpg + c) * g.kernel_h * g.kernel_w;
      for (int64_t r = 0; r < g.kernel_h; ++r) {
        const int64_t oh = reading_output(ih, r, g.stride_h, g.pad_h, g.dilation_h, g.out_h);
        if (oh < 0) continue;
        for (int64_t s = 0; s < g.kernel_w; ++s) {
          const int64_t ow = reading_output(iw, s, g.stride_w, g.pad_w, g.dilation_w, g.out_w);
          if (ow < 0) continue;
          acc += to_acc(gout_k[oh * g.out_w + ow]) * to_acc(w_kc[r * g.kernel_w + s]);
        }
      }
    }
    grad_input[i] = from_acc<T>(acc);
  }
}

template <typename T>
__global__ void grad_weight_kernel(const T* __restrict__ grad_output, const T* __restrict__ input,
                                   T* __restrict__ grad_weight, ConvGeometry g) {
  __shared__ acc_t<T> partial[kThreads];
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();
  const int64_t weights = g.out_channels * cpg * g.kernel_h * g.kernel_w;
  const int64_t positions = g.batch * g.out_h * g.out_w;
  for (int64_t wi = blockIdx.x; wi < weights; wi += gridDim.x) {
    const int64_t s = wi % g.kernel_w, r = wi / g.kernel_w % g.kernel_h;
    const int64_t c = wi / (g.kernel_w * g.kernel_h) % cpg;
    const int64_t k = wi / (g.kernel_w * g.kernel_h * cpg);
    const int64_t ci = (k / kpg) * cpg + c;
    acc_t<T> acc = 0;
    for (int64_t p = threadIdx.x; p < positions; p += blockDim.x) {
      const int64_t ow = p % g.out_w, oh = p / g.out_w % g.out_h, n = p / (g.out_w * g.out_h);
      const int64_t ih = oh * g.stride_h - g.pad_h + r * g.dilation_h;
      const int64_t iw = ow * g.stride_w - g.pad_w + s * g.dilation_w;
      if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
      acc += to_acc(grad_output[((n * g.out_channels + k) * g.out_h + oh) * g.out_w + ow]) *
             to_acc(input[((n * g.in_channels + ci) * g.in_h + ih) * g.in_w + iw]);
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int width = blockDim.x / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) grad_weight[wi] = from_acc<T>(partial[0]);
    __syncthreads();
  }
}

}  // namespace

template <typename T>
cudaError_t conv2d_forward(const T* input, const T* weight, const T* bias, T* output,
                           const ConvGeometry& g, cudaStream_t stream) {
  const int64_t total = g.batch * g.out_channels * g.out_h * g.out_w;
  launch_kernel(forward_kernel<T>, blocks_for(total), kThreads, 0, stream, input, weight, bias,
                output, g);
  return cudaGetLastError();
}

template <typename T>
cudaError_t conv2d_grad_input(const T* grad_output, const T* weight, T* grad_input,
                              const ConvGeometry& g, cudaStream_t stream) {
  const int64_t total = g.batch * g.in_channels * g.in_h * g.in_w;
  launch_kernel(grad_input_kernel<T>, blocks_for(total), kThreads, 0, stream, grad_output, weight,
                grad_input, g);
  return cudaGetLastError();
}

template <typename T>
cudaError_t conv2d_grad_weight(const T* grad_output, const T* input, T* grad_weight,
                               const ConvGeometry& g, cudaStream_t stream) {
  const int64_t weights =
      g.out_channels * g.in_channels_per_group() * g.kernel_h * g.kernel_w;
  const unsigned int blocks = static_cast<unsigned int>(weights < kMaxBlocks ? weights : kMaxBlocks);
  launch_kernel(grad_weight_kernel<T>, blocks, kThreads, 0, stream, grad_output, input, grad_weight,
                g);
  return cudaGetLastError();
}

#define INSTANTIATE(T)                                                                     \
  template cudaError_t conv2d_forward<T>(const T*, const T*, const T*, T*, const ConvGeometry&, \
                                         cudaStream_t);                                    \
  template cudaError_t conv2d_grad_input<T>(const T*, const T*, T*, const ConvGeometry&,   \
                                            cudaStream_t);                                 \
  template cudaError_t conv2d_grad_weight<T>(const T*, const T*, T*, const ConvGeometry&,  \
                                             cudaStream_t);
CLASSIC_OPS_FOR_EACH_CUDA_TYPE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace classic_ops::cuda
