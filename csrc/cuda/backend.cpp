// The CUDA kernel table: maps torch tensors and dtypes onto the raw launchers, on the
// current stream of the tensor's device (the op layer has already set the device guard),
// and turns a failed launch into an exception.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <string_view>
#include <vector>

#include "../grad_input_as_forward.h"
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

// What the kernel choices need to know of a device, asked of the driver once per process
// rather than on every call.
struct DeviceFacts {
  int multiprocessors, major, minor;
};

const DeviceFacts& current_device_facts() {
  static const std::vector<DeviceFacts> facts = [] {
    std::vector<DeviceFacts> result(c10::cuda::device_count());
    for (size_t device = 0; device < result.size(); ++device) {
      const int d = static_cast<int>(device);
      C10_CUDA_CHECK(cudaDeviceGetAttribute(&result[device].multiprocessors,
                                            cudaDevAttrMultiProcessorCount, d));
      C10_CUDA_CHECK(
          cudaDeviceGetAttribute(&result[device].major, cudaDevAttrComputeCapabilityMajor, d));
      C10_CUDA_CHECK(
          cudaDeviceGetAttribute(&result[device].minor, cudaDevAttrComputeCapabilityMinor, d));
    }
    return result;
  }();
  return facts.at(c10::cuda::current_device());
}

int multiprocessors() { return current_device_facts().multiprocessors; }

// Whether a forward GEMM runs on Hopper's warpgroup MMA, as the reduction bytes per step
// of the kernel that does (0: the warp MMA): a build with an sm_90a image
// (CLASSIC_OPS_WITH_SM90A), a compute capability 9.0 device, a geometry those kernels take,
// and, until they have passed the tests on a GPU, CLASSIC_OPS_WGMMA in the environment: 1
// for 64-byte steps, 128 for 128-byte ones (read at each call, so that a process may
// compare all three).
int warpgroup_row_bytes(const ConvGeometry& g) {
#ifdef CLASSIC_OPS_WITH_SM90A
  const char* opted_in = std::getenv("CLASSIC_OPS_WGMMA");
  const DeviceFacts& device = current_device_facts();
  if (opted_in == nullptr || device.major != 9 || device.minor != 0 ||
      !cuda::implicit_gemm_warpgroup_fits(g)) {
    return 0;
  }
  const std::string_view choice(opted_in);
  return choice == "1" ? 64 : choice == "128" ? 128 : 0;
#else
  (void)g;
  return 0;
#endif
}

cuda::Strides4 strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

bool is_channels_last(const at::Tensor& t) {
  return t.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

bool is_aligned16(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0;
}

// The vector and cp.async kernels need 16-byte aligned data; a view into a storage can
// start anywhere, so such a tensor is copied to a fresh allocation.
at::Tensor aligned16(const at::Tensor& t) {
  return !t.defined() || is_aligned16(t) ? t : t.clone();
}

#define CLASSIC_OPS_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)
// The element types the vector and tensor-core kernels are built for.
#define CLASSIC_OPS_DISPATCH_NO_DOUBLE(TYPE, NAME, ...)      \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)              \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

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

// Tensor cores: half and bfloat16 always; float as TF32 only where native convolution
// would use it too.
bool tensor_cores_serve(at::ScalarType dtype) {
  return dtype == at::kHalf || dtype == at::kBFloat16 ||
         (dtype == at::kFloat && at::globalContext().allowTF32CuDNN());
}

// The implicit GEMM's kernel sets keep every tensor channels_last (a weight's channels_last
// strides are its (K, R, S, C) order), so a channels_last model converts nothing.
constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

// weight_krsc: (K, R, S, C), contiguous; output channels_last or a window of such a tensor
// (its channels contiguous, its pixels at any strides).
void run_implicit_gemm(const at::Tensor& input, const at::Tensor& weight_krsc,
                       const at::Tensor& bias, const at::Tensor& output, const ConvGeometry& g,
                       bool relu) {
  TORCH_INTERNAL_ASSERT(input.is_contiguous(kChannelsLast) && output.stride(1) == 1 &&
                        weight_krsc.is_contiguous());
  const at::Tensor x = aligned16(input), w = aligned16(weight_krsc);
  const int splits = cuda::implicit_gemm_forward_splits(
      g, static_cast<int>(input.element_size()), multiprocessors());
  const at::Tensor partials =
      splits > 1 ? at::empty({splits, output.numel()}, output.options().dtype(at::kFloat))
                 : at::Tensor();
  CLASSIC_OPS_DISPATCH_NO_DOUBLE(input.scalar_type(), "classic_ops_cuda_implicit_gemm", [&] {
    C10_CUDA_CHECK(cuda::conv2d_forward_implicit_gemm(
        in_ptr<scalar_t>(x), in_ptr<scalar_t>(w), in_ptr<scalar_t>(bias), out_ptr<scalar_t>(output),
        strides_of(output), g, relu,
        partials.defined() ? partials.mutable_data_ptr<float>() : nullptr, splits,
        warpgroup_row_bytes(g), current_stream()));
  });
}

template <bool kRelu>
void implicit_gemm_forward(const at::Tensor& input, const at::Tensor& weight,
                           const at::Tensor& bias, const at::Tensor& output,
                           const ConvGeometry& g) {
  run_implicit_gemm(input, weight.permute({0, 2, 3, 1}), bias, output, g, kRelu);
}

// grad_input as a forward convolution (grad_input_as_forward.h) on the implicit GEMM.
bool implicit_gemm_serves_grad_input(const ConvGeometry& g, at::ScalarType dtype) {
  return grad_input_as_forward_applies(g) &&
         cuda::implicit_gemm_fits(stride1_grad_input_as_forward(with_unit_stride(g)),
                                  static_cast<int>(c10::elementSize(dtype)));
}

// Strided with unit dilation: phase by phase of the stride (grad_input_as_forward.h), each
// phase the forward GEMM of its taps, flipped and with channels swapped, over grad_output
// as it is (the phase's rows m + shift: padding -shift), written straight to the phase's
// positions of grad_input by the GEMM's epilogue (a channels_last temporary copied there
// cost another pass over grad_input). No multiply meets the zeros of a spread grad_output,
// three quarters of the products at stride 2. Otherwise one GEMM over grad_output spread
// by the stride (nothing to spread at stride 1).
void implicit_gemm_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                              const at::Tensor& grad_input, const ConvGeometry& g) {
  const bool strided = g.stride_h != 1 || g.stride_w != 1;
  if (!strided || g.dilation_h != 1 || g.dilation_w != 1) {
    run_implicit_gemm(spread_by_stride(grad_output, g, kChannelsLast),
                      weight.flip({2, 3}).permute({1, 2, 3, 0}).contiguous(), at::Tensor(),
                      grad_input, stride1_grad_input_as_forward(with_unit_stride(g)),
                      /*relu=*/false);
    return;
  }
  const at::Tensor flipped = weight.flip({2, 3});
  for_each_stride_phase(g, grad_input, [&](const StridePhase& ph, const StridePhase& pw,
                                           const at::Tensor& phase_positions) {
    ConvGeometry t = phase_as_forward(g, ph, pw);
    t.in_h = g.out_h;
    t.in_w = g.out_w;
    t.pad_h = -ph.shift;
    t.pad_w = -pw.shift;
    // The phase's taps tap0, tap0 + stride, ..., last first: in the flipped filter, every
    // stride-th from kernel - 1 - (tap0 + (taps - 1) * stride).
    const int64_t row0 = g.kernel_h - 1 - ph.tap0 - (ph.taps - 1) * g.stride_h;
    const int64_t col0 = g.kernel_w - 1 - pw.tap0 - (pw.taps - 1) * g.stride_w;
    const at::Tensor filter =
        flipped.slice(2, row0, row0 + (ph.taps - 1) * g.stride_h + 1, g.stride_h)
            .slice(3, col0, col0 + (pw.taps - 1) * g.stride_w + 1, g.stride_w)
            .permute({1, 2, 3, 0})
            .contiguous();
    run_implicit_gemm(grad_output, filter, at::Tensor(), phase_positions, t, /*relu=*/false);
  });
}

void implicit_gemm_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& grad_weight, const ConvGeometry& g) {
  TORCH_INTERNAL_ASSERT(grad_output.is_contiguous(kChannelsLast) &&
                        input.is_contiguous(kChannelsLast) &&
                        grad_weight.is_contiguous(kChannelsLast));
  const at::Tensor dy = aligned16(grad_output), x = aligned16(input);
  const int splits = cuda::implicit_gemm_grad_weight_splits(
      g, static_cast<int>(input.element_size()), multiprocessors());
  const at::Tensor partials =
      at::empty({splits, g.out_channels, g.kernel_h * g.kernel_w * g.in_channels},
                grad_output.options().dtype(at::kFloat));
  CLASSIC_OPS_DISPATCH_NO_DOUBLE(input.scalar_type(), "classic_ops_cuda_grad_weight_gemm", [&] {
    C10_CUDA_CHECK(cuda::conv2d_grad_weight_implicit_gemm(
        in_ptr<scalar_t>(dy), in_ptr<scalar_t>(x), partials.mutable_data_ptr<float>(), splits,
        out_ptr<scalar_t>(grad_weight), g, current_stream()));
  });
}

// A direct (NCHW) backward kernel in a channels_last kernel set, for the geometries the
// implicit GEMM does not take: its tensors are converted around it.
template <decltype(conv_grad_input)* kernel>
void in_nchw(const at::Tensor& a, const at::Tensor& b, const at::Tensor& result,
             const ConvGeometry& g) {
  const at::Tensor result_nchw = at::empty(result.sizes(), result.options());
  kernel(a.contiguous(), b.contiguous(), result_nchw, g);
  result.copy_(result_nchw);
}

// Elements of `dtype` in one 16-byte vector, the unit of the vector and cp.async kernels.
int64_t vector_elements(at::ScalarType dtype) {
  return 16 / static_cast<int64_t>(c10::elementSize(dtype));
}

// In-channel counts that are no multiple of a 16-byte vector (the 3 colours of a first
// layer) are zero-padded up to one, on the input and the filter alike: the padded
// channels add nothing to any sum.
int64_t whole_vectors_of(int64_t channels, at::ScalarType dtype) {
  const int64_t vec = vector_elements(dtype);
  return (channels + vec - 1) / vec * vec;
}

ConvGeometry with_in_channels(ConvGeometry g, int64_t channels) {
  g.in_channels = channels;
  return g;
}

at::Tensor zero_pad_channels(const at::Tensor& t, int64_t channels) {
  // at::zeros ignores a memory format in its options: allocate with at::empty, then zero.
  at::Tensor padded =
      at::empty({t.size(0), channels, t.size(2), t.size(3)}, t.options(), kChannelsLast).zero_();
  padded.narrow(1, 0, t.size(1)).copy_(t);
  return padded;
}

template <bool kRelu>
void padded_implicit_gemm_forward(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& bias, const at::Tensor& output,
                                  const ConvGeometry& g) {
  const int64_t c = whole_vectors_of(g.in_channels, input.scalar_type());
  implicit_gemm_forward<kRelu>(zero_pad_channels(input, c), zero_pad_channels(weight, c), bias,
                               output, with_in_channels(g, c));
}

void padded_implicit_gemm_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                     const at::Tensor& grad_input, const ConvGeometry& g) {
  const int64_t c = whole_vectors_of(g.in_channels, weight.scalar_type());
  const at::Tensor padded =
      at::empty({g.batch, c, g.in_h, g.in_w}, grad_input.options(), kChannelsLast);
  implicit_gemm_grad_input(grad_output, zero_pad_channels(weight, c), padded,
                           with_in_channels(g, c));
  grad_input.copy_(padded.narrow(1, 0, g.in_channels));
}

void padded_implicit_gemm_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                      const at::Tensor& grad_weight, const ConvGeometry& g) {
  const int64_t c = whole_vectors_of(g.in_channels, input.scalar_type());
  const at::Tensor padded = at::empty({g.out_channels, c, g.kernel_h, g.kernel_w},
                                      grad_weight.options(), kChannelsLast);
  implicit_gemm_grad_weight(grad_output, zero_pad_channels(input, c), padded,
                            with_in_channels(g, c));
  grad_weight.copy_(padded.narrow(1, 0, g.in_channels));
}

void depthwise_nchw_forward(const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& output,
                            const ConvGeometry& g) {
  CLASSIC_OPS_DISPATCH(input.scalar_type(), "classic_ops_cuda_depthwise_nchw", [&] {
    C10_CUDA_CHECK(cuda::depthwise_conv2d_forward_nchw(
        in_ptr<scalar_t>(input), in_ptr<scalar_t>(weight), in_ptr<scalar_t>(bias),
        out_ptr<scalar_t>(output), g, current_stream()));
  });
}

// A depthwise weight (C, 1, R, S) as (R, S, C): one tap's weights contiguous over channels.
at::Tensor taps_outer(const at::Tensor& weight) {
  return weight.reshape({weight.size(0), -1}).t().contiguous();
}

void depthwise_channels_last_forward(const at::Tensor& input, const at::Tensor& weight,
                                     const at::Tensor& bias, const at::Tensor& output,
                                     const ConvGeometry& g) {
  const at::Tensor weight_rsc = taps_outer(weight);
  const at::Tensor x = aligned16(input), b = aligned16(bias);
  CLASSIC_OPS_DISPATCH_NO_DOUBLE(input.scalar_type(), "classic_ops_cuda_depthwise_cl", [&] {
    C10_CUDA_CHECK(cuda::depthwise_conv2d_forward_channels_last(
        in_ptr<scalar_t>(x), in_ptr<scalar_t>(weight_rsc), in_ptr<scalar_t>(b),
        out_ptr<scalar_t>(output), g, current_stream()));
  });
}

// grad_input of a stride-1 depthwise convolution is its forward with the filters flipped
// (grad_input_as_forward.h), which the forward kernel runs with each loaded input serving
// four outputs, where that form applies; otherwise each input pixel gathers the outputs
// that read it.
void depthwise_channels_last_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                        const at::Tensor& grad_input, const ConvGeometry& g) {
  const at::Tensor dy = aligned16(grad_output);
  if (g.stride_h == 1 && g.stride_w == 1 && grad_input_as_forward_applies(g)) {
    depthwise_channels_last_forward(dy, weight.flip({2, 3}), at::Tensor(), grad_input,
                                    stride1_grad_input_as_forward(g));
    return;
  }
  const at::Tensor weight_rsc = taps_outer(weight);
  CLASSIC_OPS_DISPATCH_NO_DOUBLE(dy.scalar_type(), "classic_ops_cuda_depthwise_cl_grad_input", [&] {
    C10_CUDA_CHECK(cuda::depthwise_conv2d_grad_input_channels_last(
        in_ptr<scalar_t>(dy), in_ptr<scalar_t>(weight_rsc), out_ptr<scalar_t>(grad_input), g,
        current_stream()));
  });
}

void depthwise_channels_last_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                         const at::Tensor& grad_weight, const ConvGeometry& g) {
  const at::Tensor dy = aligned16(grad_output), x = aligned16(input);
  const int splits = cuda::depthwise_channels_last_grad_weight_splits(
      g, static_cast<int>(input.element_size()), multiprocessors());
  const at::Tensor partials =
      at::empty({splits, grad_weight.numel()}, grad_output.options().dtype(at::kFloat));
  CLASSIC_OPS_DISPATCH_NO_DOUBLE(
      dy.scalar_type(), "classic_ops_cuda_depthwise_cl_grad_weight", [&] {
        C10_CUDA_CHECK(cuda::depthwise_conv2d_grad_weight_channels_last(
            in_ptr<scalar_t>(dy), in_ptr<scalar_t>(x), partials.mutable_data_ptr<float>(), splits,
            out_ptr<scalar_t>(grad_weight), g, current_stream()));
      });
}

// Whether `channels` elements of `dtype` split into whole 16-byte vectors.
bool splits_into_vectors(int64_t channels, at::ScalarType dtype) {
  return dtype != at::kDouble && channels % vector_elements(dtype) == 0;
}

void max_pool_forward(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                      const PoolGeometry& g) {
  int64_t* indices_ptr = indices.defined() ? indices.mutable_data_ptr<int64_t>() : nullptr;
  constexpr auto cl = at::MemoryFormat::ChannelsLast;
  if (splits_into_vectors(g.channels, input.scalar_type()) && input.is_contiguous(cl) &&
      output.is_contiguous(cl) && (!indices.defined() || indices.is_contiguous(cl))) {
    const at::Tensor x = aligned16(input);
    CLASSIC_OPS_DISPATCH_NO_DOUBLE(input.scalar_type(), "classic_ops_cuda_max_pool2d_cl", [&] {
      C10_CUDA_CHECK(cuda::max_pool2d_forward_channels_last(
          in_ptr<scalar_t>(x), out_ptr<scalar_t>(output), indices_ptr, g, current_stream()));
    });
    return;
  }
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

// The implicit-GEMM kernels for a convolution, indexed by whether its grad_input and its
// grad_weight can run on tensor cores too (else the direct kernels take them, in NCHW).
struct GemmKernels {
  ConvKernels with_backward[2][2];
};

GemmKernels gemm_kernels(decltype(ConvKernels::forward) forward,
                         decltype(ConvKernels::forward_relu) forward_relu,
                         decltype(ConvKernels::grad_input) grad_input,
                         decltype(ConvKernels::grad_weight) grad_weight) {
  GemmKernels kernels;
  for (const bool gemm_grad_input : {false, true}) {
    for (const bool gemm_grad_weight : {false, true}) {
      kernels.with_backward[gemm_grad_input][gemm_grad_weight] = {
          kChannelsLast,
          forward,
          gemm_grad_input ? grad_input : in_nchw<conv_grad_input>,
          gemm_grad_weight ? grad_weight : in_nchw<conv_grad_weight>,
          forward_relu,
          /*weight_layout=*/kChannelsLast,
          /*backward_layout=*/kChannelsLast};
    }
  }
  return kernels;
}

// Tensor-core implicit GEMM for dense and 1x1 convolutions (in channels padded to whole
// vectors where needed), its backward passes where they apply; row segments or
// shared-memory tiles (NCHW) or channel vectors (channels_last, and the backward of NCHW
// too where its channels split into vectors) for depthwise; the direct kernel, which takes
// everything, otherwise and for the backward passes the faster kernels do not serve.
const ConvKernels& select_conv(ConvRoute route, const ConvGeometry& g, at::ScalarType dtype,
                               at::MemoryFormat input_format) {
  constexpr auto nchw = at::MemoryFormat::Contiguous, cl = at::MemoryFormat::ChannelsLast;
  static const ConvKernels direct = {nchw, conv_forward, conv_grad_input, conv_grad_weight};
  static const GemmKernels gemm =
      gemm_kernels(implicit_gemm_forward<false>, implicit_gemm_forward<true>,
                   implicit_gemm_grad_input, implicit_gemm_grad_weight);
  static const GemmKernels padded_gemm =
      gemm_kernels(padded_implicit_gemm_forward<false>, padded_implicit_gemm_forward<true>,
                   padded_implicit_gemm_grad_input, padded_implicit_gemm_grad_weight);
  static const ConvKernels depthwise_vectors = {cl,
                                                depthwise_channels_last_forward,
                                                depthwise_channels_last_grad_input,
                                                depthwise_channels_last_grad_weight,
                                                /*forward_relu=*/nullptr,
                                                /*weight_layout=*/nchw,
                                                /*backward_layout=*/cl};
  static const ConvKernels depthwise_nchw = {nchw, depthwise_nchw_forward, conv_grad_input,
                                             conv_grad_weight};
  // NCHW forward, and backward on the channels_last kernels over the op layer's
  // channels_last copies: the direct kernels walk every pixel once per weight element
  // (grad_weight) and divide in 64 bits per tap (grad_input), where a transpose is one pass.
  static const ConvKernels depthwise_nchw_vector_backward = {nchw,
                                                             depthwise_nchw_forward,
                                                             depthwise_channels_last_grad_input,
                                                             depthwise_channels_last_grad_weight,
                                                             /*forward_relu=*/nullptr,
                                                             /*weight_layout=*/nchw,
                                                             /*backward_layout=*/cl};
  const int element_bytes = static_cast<int>(c10::elementSize(dtype));
  if (route == ConvRoute::Depthwise) {
    const bool vectors = g.out_channels == g.in_channels &&
                         splits_into_vectors(g.in_channels, dtype) &&
                         cuda::depthwise_channels_last_fits(g, element_bytes);
    if (input_format == cl && vectors) return depthwise_vectors;
    if (!cuda::depthwise_nchw_fits(g, dtype == at::kDouble ? 8 : 4)) return direct;
    return vectors ? depthwise_nchw_vector_backward : depthwise_nchw;
  }
  if (!tensor_cores_serve(dtype) || g.groups != 1) return direct;
  const ConvGeometry padded = with_in_channels(g, whole_vectors_of(g.in_channels, dtype));
  if (cuda::implicit_gemm_fits(padded, element_bytes)) {
    return (padded.in_channels == g.in_channels ? gemm : padded_gemm)
        .with_backward[implicit_gemm_serves_grad_input(padded, dtype)]
                      [cuda::implicit_gemm_grad_weight_fits(padded, element_bytes)];
  }
  return direct;
}

}  // namespace

const BackendKernels& cuda_kernels() {
  static const BackendKernels kernels = {select_conv,
                                         {max_pool_forward, max_pool_grad_input},
                                         [](const at::Tensor& weight, at::MemoryFormat format) {
                                           return weight.contiguous(format);
                                         },
                                         [](at::IntArrayRef sizes, const at::TensorOptions& options,
                                            at::MemoryFormat format) {
                                           return at::empty(sizes, options.memory_format(format));
                                         }};
  return kernels;
}

}  // namespace classic_ops
