// CUDA kernel launchers: raw device pointers, plain geometry, the caller's stream. Each
// returns the launch's error code. Instantiated in the .cu files for float, double,
// __half and __nv_bfloat16; the .cu files include no torch headers, to keep nvcc fast.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../geometry.h"

namespace classic_ops::cuda {

// Element strides of a 4-D tensor, in (N, C, H, W) order.
struct Strides4 {
  int64_t n, c, h, w;
};

// Direct convolution with groups; serves the depthwise and 1x1 routes too. bias may be null.
template <typename T>
cudaError_t conv2d_forward(const T* input, const T* weight, const T* bias, T* output,
                           const ConvGeometry& g, cudaStream_t stream);
template <typename T>
cudaError_t conv2d_grad_input(const T* grad_output, const T* weight, T* grad_input,
                              const ConvGeometry& g, cudaStream_t stream);
template <typename T>
cudaError_t conv2d_grad_weight(const T* grad_output, const T* input, T* grad_weight,
                               const ConvGeometry& g, cudaStream_t stream);

// output and indices share out_strides; indices may be null.
template <typename T>
cudaError_t max_pool2d_forward(const T* input, Strides4 in_strides, T* output, int64_t* indices,
                               Strides4 out_strides, bool channels_last, const PoolGeometry& g,
                               cudaStream_t stream);
template <typename T>
cudaError_t max_pool2d_grad_input(const T* grad_output, const int64_t* indices,
                                  Strides4 out_strides, T* grad_input, Strides4 in_strides,
                                  bool channels_last, const PoolGeometry& g, cudaStream_t stream);

}  // namespace classic_ops::cuda
