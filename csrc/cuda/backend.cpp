// The CUDA kernel table: maps torch tensors and dtypes onto the raw launchers, on the
// current stream of the tensor's device (the op layer has already set the device guard),
// and turns a failed launch into an exception.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../kernels.h"
#include "launchers.h"

namespace classic_ops {
namespace {

// The CUDA type with the same bits as a torch element type.
template <typename T>
struct DeviceType {
  using type = T;
};
template <>
struct DeviceType<at::Half> {
  using type = __half;
};
template <>
struct DeviceType<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename T>
const typename DeviceType<T>::type* in_ptr(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<const typename DeviceType<T>::type*>(t.const_data_ptr<T>())
                     : nullptr;
}
template <typename T>
typename DeviceType<T>::type* out_ptr(const at::Tensor& t) {
  return reinterpret_cast<typename DeviceType<T>::type*>(t.mutable_data_ptr<T>());
}

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

cuda::Strides4 strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

bool is_channels_last(const at::Tensor& t) {
  return t.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

#define CLASSIC_OPS_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

void conv_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                  const at::Tensor& output, const ConvGeometry& g) {
  CLASSIC_OPS_DISPATCH(input.scalar_type(), "classic_ops_cuda_conv2d_forward", [&] {
    C10_CUDA_CHECK(cuda::conv2d_forward(in_ptr<scalar_t>(input), in_ptr<scalar_t>(weight),
                                        in_ptr<scalar_t>(bias), out_ptr<scalar_t>(output), g,
                                        current_stream()));
  });
}

void conv_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                     const at::Tensor& grad_input, const ConvGeometry& g) {
  CLASSIC_OPS_DISPATCH(grad_output.scalar_type(), "classic_ops_cuda_conv2d_grad_input", [&] {
    C10_CUDA_CHECK(cuda::conv2d_grad_input(in_ptr<scalar_t>(grad_output), in_ptr<scalar_t>(weight),
                                           out_ptr<scalar_t>(grad_input), g, current_stream()));
  });
}

void conv_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& grad_weight, const ConvGeometry& g) {
  CLASSIC_OPS_DISPATCH(grad_output.scalar_type(), "classic_ops_cuda_conv2d_grad_weight", [&] {
    C10_CUDA_CHECK(cuda::conv2d_grad_weight(in_ptr<scalar_t>(grad_output), in_ptr<scalar_t>(input),
                                            out_ptr<scalar_t>(grad_weight), g, current_stream()));
  });
}

void max_pool_forward(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                      const PoolGeometry& g) {
  int64_t* indices_ptr = indices.defined() ? indices.mutable_data_ptr<int64_t>() : nullptr;
  CLASSIC_OPS_DISPATCH(input.scalar_type(), "classic_ops_cuda_max_pool2d_forward", [&] {
    C10_CUDA_CHECK(cuda::max_pool2d_forward(in_ptr<scalar_t>(input), strides_of(input),
                                            out_ptr<scalar_t>(output), indices_ptr,
                                            strides_of(output), is_channels_last(input), g,
                                            current_stream()));
  });
}

void max_pool_grad_input(const at::Tensor& grad_output, const at::Tensor& indices,
                         const at::Tensor& grad_input, const PoolGeometry& g) {
  CLASSIC_OPS_DISPATCH(grad_output.scalar_type(), "classic_ops_cuda_max_pool2d_grad_input", [&] {
    C10_CUDA_CHECK(cuda::max_pool2d_grad_input(
        in_ptr<scalar_t>(grad_output), indices.const_data_ptr<int64_t>(), strides_of(grad_output),
        out_ptr<scalar_t>(grad_input), strides_of(grad_input), is_channels_last(grad_input), g,
        current_stream()));
  });
}

// One direct kernel serves all three convolution routes and every element type for now.
const ConvKernels& select_conv(ConvRoute, const ConvGeometry&, at::ScalarType, at::MemoryFormat) {
  static const ConvKernels direct = {at::MemoryFormat::Contiguous, conv_forward, conv_grad_input,
                                     conv_grad_weight};
  return direct;
}

}  // namespace

const BackendKernels& cuda_kernels() {
  static const BackendKernels kernels = {select_conv, {max_pool_forward, max_pool_grad_input}};
  return kernels;
}

}  // namespace classic_ops
