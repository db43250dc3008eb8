// The contract between the backend-neutral op layer (conv2d.cpp, max_pool2d.cpp) and the
// per-backend kernels. The op layer checks arguments, picks memory formats and allocates;
// a kernel only computes, and writes every element of its output.
//
// Convolution kernels see the forward pass's input and output contiguous in their
// forward_layout, the weight contiguous in weight_layout (the forward pass's, where
// forward_weight_in_either_layout, grad_input's where grad_input_weight_in_either_layout,
// in whichever of the two formats it is, if either), and
// grad_output, input and the gradients of the backward passes contiguous in
// backward_layout, but grad_weight in weight_layout or, where grad_weight_in_either_layout,
// the format returned (each NCHW or channels_last; a channels_last weight is the
// (K, R, S, C) order of an implicit GEMM).
// Max-pool kernels see tensors that are each contiguous in NCHW or in channels_last (the
// same format for the input and everything derived from it) and index them by strides.
#pragma once

#include <ATen/core/Tensor.h>

#include "checks.h"

namespace classic_ops {

struct ConvKernels {
  at::MemoryFormat forward_layout;
  // bias may be undefined.
  void (*forward)(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                  const at::Tensor& output, const ConvGeometry& g);
  void (*grad_input)(const at::Tensor& grad_output, const at::Tensor& weight,
                     const at::Tensor& grad_input, const ConvGeometry& g);
  void (*grad_weight)(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& grad_weight, const ConvGeometry& g);
  // forward followed by a ReLU in the same pass, where the backend has one; otherwise the
  // op layer applies the ReLU to forward's output in place.
  void (*forward_relu)(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                       const at::Tensor& output, const ConvGeometry& g) = nullptr;
  at::MemoryFormat weight_layout = at::MemoryFormat::Contiguous;
  at::MemoryFormat backward_layout = at::MemoryFormat::Contiguous;
  // grad_weight writes a weight gradient contiguous in either format, and the op layer
  // hands it the one it returns rather than one in weight_layout to convert afterwards.
  bool grad_weight_in_either_layout = false;
  // forward reads the weight by its strides, and the op layer hands it the weight as it is
  // where it is contiguous in either format, rather than a copy in weight_layout (which the
  // CPU backend keeps in its weight cache and compares with the weight on every call).
  bool forward_weight_in_either_layout = false;
  // The same for grad_input.
  bool grad_input_weight_in_either_layout = false;
};

struct MaxPoolKernels {
  // indices may be undefined: the inference path writes none.
  void (*forward)(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                  const PoolGeometry& g);
  void (*grad_input)(const at::Tensor& grad_output, const at::Tensor& indices,
                     const at::Tensor& grad_input, const PoolGeometry& g);
};

struct BackendKernels {
  // The kernels for a route, geometry, element type and input memory format (a backend may
  // have faster ones for some).
  const ConvKernels& (*conv)(ConvRoute route, const ConvGeometry& g, at::ScalarType dtype,
                             at::MemoryFormat input_format);
  MaxPoolKernels max_pool;
  // The weight as the convolution kernels see it: contiguous in `format`. A backend may keep
  // the copy of a weight of another layout (a channels_last model's) rather than make it on
  // every call.
  at::Tensor (*contiguous_weight)(const at::Tensor& weight, at::MemoryFormat format);
  // A new uninitialized tensor for an op's result, like at::empty. The CPU backend puts
  // the largest on transparent huge pages (cpu/huge_pages.h).
  at::Tensor (*empty)(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat format);
};

const BackendKernels& cpu_kernels();
#ifdef CLASSIC_OPS_WITH_CUDA
const BackendKernels& cuda_kernels();
#endif

const BackendKernels& kernels_for(const at::Tensor& t);

}  // namespace classic_ops
