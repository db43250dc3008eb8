// The contract between the backend-neutral op layer (conv2d.cpp, max_pool2d.cpp) and the
// per-backend kernels. The op layer checks arguments, picks memory formats and allocates;
// a kernel only computes, and writes every element of its output.
//
// Convolution kernels see contiguous NCHW input, weight, grad_output and outputs.
// Max-pool kernels see tensors that are each contiguous in NCHW or in channels_last (the
// same format for the input and everything derived from it) and index them by strides.
#pragma once

#include <ATen/core/Tensor.h>

#include "checks.h"

namespace classic_ops {

struct ConvKernels {
  // bias may be undefined.
  void (*forward)(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                  const at::Tensor& output, const ConvGeometry& g);
  void (*grad_input)(const at::Tensor& grad_output, const at::Tensor& weight,
                     const at::Tensor& grad_input, const ConvGeometry& g);
  void (*grad_weight)(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& grad_weight, const ConvGeometry& g);
};

struct MaxPoolKernels {
  // indices may be undefined: the inference path writes none.
  void (*forward)(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                  const PoolGeometry& g);
  void (*grad_input)(const at::Tensor& grad_output, const at::Tensor& indices,
                     const at::Tensor& grad_input, const PoolGeometry& g);
};

struct BackendKernels {
  ConvKernels direct;
  ConvKernels depthwise;
  ConvKernels pointwise;
  MaxPoolKernels max_pool;

  const ConvKernels& conv(ConvRoute route) const {
    switch (route) {
      case ConvRoute::Depthwise: return depthwise;
      case ConvRoute::Pointwise: return pointwise;
      case ConvRoute::Direct: break;
    }
    return direct;
  }
};

const BackendKernels& cpu_kernels();
#ifdef CLASSIC_OPS_WITH_CUDA
const BackendKernels& cuda_kernels();
#endif

const BackendKernels& kernels_for(const at::Tensor& t);

}  // namespace classic_ops
