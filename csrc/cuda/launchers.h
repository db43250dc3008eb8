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

// Implicit GEMM on tensor cores (conv2d_implicit_gemm.cu) for groups = 1: channels_last
// input, weight in (K, R, S, C) order, every pointer 16-byte aligned; output written at
// output_strides, its channels contiguous (output_strides.c == 1): a channels_last tensor,
// or a window of one such as a stride phase of grad_input. float runs as TF32. bias may be
// null; relu applies a ReLU after the bias. The reduction is
// split `splits` ways (implicit_gemm_forward_splits: more than one where the output tiles
// are too few to fill the device), with splits * N * out_h * out_w * K floats of scratch
// in `partials` when there is more than one. warpgroup_row_bytes 64 or 128: on Hopper's
// warpgroup MMA, with that much reduction per pipeline step (only where
// implicit_gemm_warpgroup_fits, and the build has an sm_90a image for the device); 0: on
// the warp MMA. Instantiated for float, __half and __nv_bfloat16.
template <typename T>
cudaError_t conv2d_forward_implicit_gemm(const T* input, const T* weight_krsc, const T* bias,
                                         T* output, const Strides4& output_strides,
                                         const ConvGeometry& g, bool relu, float* partials,
                                         int splits, int warpgroup_row_bytes, cudaStream_t stream);
bool implicit_gemm_warpgroup_fits(const ConvGeometry& g);
int implicit_gemm_forward_splits(const ConvGeometry& g, int element_bytes, int multiprocessors);
// Whether the implicit GEMM takes this geometry with elements of this size.
bool implicit_gemm_fits(const ConvGeometry& g, int element_bytes);

// grad_weight on tensor cores, same layouts (grad_output channels_last too), written in
// (K, R, S, C) order. The pixels are split `splits` ways for parallelism;
// `partials` holds splits * K * R * S * C floats of scratch.
template <typename T>
cudaError_t conv2d_grad_weight_implicit_gemm(const T* grad_output, const T* input,
                                             float* partials, int splits, T* grad_weight_krsc,
                                             const ConvGeometry& g, cudaStream_t stream);
bool implicit_gemm_grad_weight_fits(const ConvGeometry& g, int element_bytes);
// How many ways to split the pixels on a device of `multiprocessors`.
int implicit_gemm_grad_weight_splits(const ConvGeometry& g, int element_bytes,
                                     int multiprocessors);

// Depthwise forward, NCHW: any multiplier, kernel size, stride and dilation that
// depthwise_nchw_fits (the input patch of a tile must fit in shared memory; acc_bytes is
// the size of the accumulation type: 8 for double, else 4).
bool depthwise_nchw_fits(const ConvGeometry& g, int acc_bytes);
template <typename T>
cudaError_t depthwise_conv2d_forward_nchw(const T* input, const T* weight, const T* bias,
                                          T* output, const ConvGeometry& g, cudaStream_t stream);
// Depthwise forward, channels_last, multiplier 1, in_channels a multiple of 16 bytes'
// worth of elements; weight in (R, S, C) order; every pointer 16-byte aligned.
bool depthwise_channels_last_fits(const ConvGeometry& g, int element_bytes);
template <typename T>
cudaError_t depthwise_conv2d_forward_channels_last(const T* input, const T* weight_rsc,
                                                   const T* bias, T* output, const ConvGeometry& g,
                                                   cudaStream_t stream);

// Depthwise backward, channels_last, where depthwise_channels_last_fits: grad_input
// gathered (weight in (R, S, C) order), and grad_weight ((C, 1, R, S)) summed over the
// pixels split `splits` ways (depthwise_channels_last_grad_weight_splits), with
// splits * C * R * S floats of scratch in `partials`. Instantiated for float, __half and
// __nv_bfloat16.
template <typename T>
cudaError_t depthwise_conv2d_grad_input_channels_last(const T* grad_output, const T* weight_rsc,
                                                      T* grad_input, const ConvGeometry& g,
                                                      cudaStream_t stream);
int depthwise_channels_last_grad_weight_splits(const ConvGeometry& g, int element_bytes,
                                               int multiprocessors);
template <typename T>
cudaError_t depthwise_conv2d_grad_weight_channels_last(const T* grad_output, const T* input,
                                                       float* partials, int splits, T* grad_weight,
                                                       const ConvGeometry& g, cudaStream_t stream);

// output and indices share out_strides; indices may be null.
template <typename T>
cudaError_t max_pool2d_forward(const T* input, Strides4 in_strides, T* output, int64_t* indices,
                               Strides4 out_strides, bool channels_last, const PoolGeometry& g,
                               cudaStream_t stream);
// Contiguous channels_last input, output and indices (indices may be null), channels a
// multiple of 16 bytes' worth of elements, pointers 16-byte aligned.
template <typename T>
cudaError_t max_pool2d_forward_channels_last(const T* input, T* output, int64_t* indices,
                                             const PoolGeometry& g, cudaStream_t stream);
template <typename T>
cudaError_t max_pool2d_grad_input(const T* grad_output, const int64_t* indices,
                                  Strides4 out_strides, T* grad_input, Strides4 in_strides,
                                  bool channels_last, const PoolGeometry& g, cudaStream_t stream);

}  // namespace classic_ops::cuda
