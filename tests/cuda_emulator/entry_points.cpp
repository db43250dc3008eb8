// C entry points over the CUDA launchers (csrc/cuda/launchers.h) for the tests, which call
// them through ctypes with CPU tensors: geometries as arrays of int64 in the structs'
// field order, element types by code.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>

#include "emulator.h"
#include "launchers.h"

namespace {

using namespace classic_ops;
using namespace classic_ops::cuda;

ConvGeometry conv_geometry(const int64_t* fields) {
  ConvGeometry g;
  static_assert(sizeof g == 16 * sizeof(int64_t));
  std::memcpy(&g, fields, sizeof g);
  return g;
}
PoolGeometry pool_geometry(const int64_t* fields) {
  PoolGeometry g;
  static_assert(sizeof g == 14 * sizeof(int64_t));
  std::memcpy(&g, fields, sizeof g);
  return g;
}
Strides4 strides(const int64_t* s) { return {s[0], s[1], s[2], s[3]}; }

// The element-type codes of the Python side.
enum DType { kFloat = 0, kDouble = 1, kHalf = 2, kBfloat16 = 3 };

// Calls call(T{}) for the element type `dtype`; -1 for a type the launcher is not built for.
template <bool kWithDouble = true, class Call>
int with_type(int dtype, Call&& call) {
  switch (dtype) {
    case kFloat:
      return call(float{});
    case kDouble:
      if constexpr (kWithDouble) return call(double{});
      break;
    case kHalf:
      return call(__half{});
    case kBfloat16:
      return call(__nv_bfloat16{});
  }
  return -1;
}

}  // namespace

extern "C" {

void emulated_register_buffer(const void* data, size_t bytes) {
  emulated::register_buffer(data, bytes);
}
void emulated_clear_buffers() { emulated::clear_buffers(); }
void emulated_configure(int copies_land_at_issue, unsigned seed) {
  emulated::configure(
      copies_land_at_issue ? emulated::CopiesLand::kAtIssue : emulated::CopiesLand::kAtWait, seed);
}
const char* emulated_last_error() { return emulated::last_error(); }

int emulated_implicit_gemm_fits(const int64_t* g, int element_bytes) {
  return implicit_gemm_fits(conv_geometry(g), element_bytes);
}
int emulated_implicit_gemm_grad_weight_fits(const int64_t* g, int element_bytes) {
  return implicit_gemm_grad_weight_fits(conv_geometry(g), element_bytes);
}
int emulated_implicit_gemm_forward_splits(const int64_t* g, int element_bytes,
                                          int multiprocessors) {
  return implicit_gemm_forward_splits(conv_geometry(g), element_bytes, multiprocessors);
}
int emulated_implicit_gemm_grad_weight_splits(const int64_t* g, int element_bytes,
                                              int multiprocessors) {
  return implicit_gemm_grad_weight_splits(conv_geometry(g), element_bytes, multiprocessors);
}
int emulated_depthwise_nchw_fits(const int64_t* g, int acc_bytes) {
  return depthwise_nchw_fits(conv_geometry(g), acc_bytes);
}
int emulated_depthwise_channels_last_fits(const int64_t* g, int element_bytes) {
  return depthwise_channels_last_fits(conv_geometry(g), element_bytes);
}

int emulated_conv2d_forward_implicit_gemm(int dtype, const void* input, const void* weight_krsc,
                                          const void* bias, void* output,
                                          const int64_t* output_strides, const int64_t* g,
                                          int relu, float* partials, int splits,
                                          int warpgroup_row_bytes) {
  return with_type<false>(dtype, [&](auto t) {
    using T = decltype(t);
    return conv2d_forward_implicit_gemm<T>(
        static_cast<const T*>(input), static_cast<const T*>(weight_krsc),
        static_cast<const T*>(bias), static_cast<T*>(output),
        strides(output_strides), conv_geometry(g),
        relu != 0, partials, splits, warpgroup_row_bytes, nullptr);
  });
}
int emulated_implicit_gemm_warpgroup_fits(const int64_t* g) {
  return implicit_gemm_warpgroup_fits(conv_geometry(g));
}
int emulated_conv2d_grad_weight_implicit_gemm(int dtype, const void* grad_output, const void* input,
                                              float* partials, int splits, void* grad_weight_krsc,
                                              const int64_t* g) {
  return with_type<false>(dtype, [&](auto t) {
    using T = decltype(t);
    return conv2d_grad_weight_implicit_gemm<T>(
        static_cast<const T*>(grad_output), static_cast<const T*>(input), partials, splits,
        static_cast<T*>(grad_weight_krsc), conv_geometry(g), nullptr);
  });
}
int emulated_conv2d_forward(int dtype, const void* input, const void* weight, const void* bias,
                            void* output, const int64_t* g) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return conv2d_forward<T>(static_cast<const T*>(input), static_cast<const T*>(weight),
                             static_cast<const T*>(bias), static_cast<T*>(output), conv_geometry(g),
                             nullptr);
  });
}
int emulated_conv2d_grad_input(int dtype, const void* grad_output, const void* weight,
                               void* grad_input, const int64_t* g) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return conv2d_grad_input<T>(static_cast<const T*>(grad_output), static_cast<const T*>(weight),
                                static_cast<T*>(grad_input), conv_geometry(g), nullptr);
  });
}
int emulated_conv2d_grad_weight(int dtype, const void* grad_output, const void* input,
                                void* grad_weight, const int64_t* g) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return conv2d_grad_weight<T>(static_cast<const T*>(grad_output), static_cast<const T*>(input),
                                 static_cast<T*>(grad_weight), conv_geometry(g), nullptr);
  });
}
int emulated_depthwise_conv2d_forward_nchw(int dtype, const void* input, const void* weight,
                                           const void* bias, void* output, const int64_t* g) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return depthwise_conv2d_forward_nchw<T>(
        static_cast<const T*>(input), static_cast<const T*>(weight), static_cast<const T*>(bias),
        static_cast<T*>(output), conv_geometry(g), nullptr);
  });
}
int emulated_depthwise_conv2d_forward_channels_last(int dtype, const void* input,
                                                    const void* weight_rsc, const void* bias,
                                                    void* output, const int64_t* g) {
  return with_type<false>(dtype, [&](auto t) {
    using T = decltype(t);
    return depthwise_conv2d_forward_channels_last<T>(
        static_cast<const T*>(input), static_cast<const T*>(weight_rsc),
        static_cast<const T*>(bias), static_cast<T*>(output), conv_geometry(g), nullptr);
  });
}
int emulated_depthwise_channels_last_grad_weight_splits(const int64_t* g, int element_bytes,
                                                        int multiprocessors) {
  return depthwise_channels_last_grad_weight_splits(conv_geometry(g), element_bytes,
                                                    multiprocessors);
}
int emulated_depthwise_conv2d_grad_input_channels_last(int dtype, const void* grad_output,
                                                       const void* weight_rsc, void* grad_input,
                                                       const int64_t* g) {
  return with_type<false>(dtype, [&](auto t) {
    using T = decltype(t);
    return depthwise_conv2d_grad_input_channels_last<T>(
        static_cast<const T*>(grad_output), static_cast<const T*>(weight_rsc),
        static_cast<T*>(grad_input), conv_geometry(g), nullptr);
  });
}
int emulated_depthwise_conv2d_grad_weight_channels_last(int dtype, const void* grad_output,
                                                        const void* input, float* partials,
                                                        int splits, void* grad_weight,
                                                        const int64_t* g) {
  return with_type<false>(dtype, [&](auto t) {
    using T = decltype(t);
    return depthwise_conv2d_grad_weight_channels_last<T>(
        static_cast<const T*>(grad_output), static_cast<const T*>(input), partials, splits,
        static_cast<T*>(grad_weight), conv_geometry(g), nullptr);
  });
}
int emulated_max_pool2d_forward(int dtype, const void* input, const int64_t* in_strides,
                                void* output, int64_t* indices, const int64_t* out_strides,
                                int channels_last, const int64_t* g) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return max_pool2d_forward<T>(static_cast<const T*>(input), strides(in_strides),
                                 static_cast<T*>(output), indices, strides(out_strides),
                                 channels_last != 0, pool_geometry(g), nullptr);
  });
}
int emulated_max_pool2d_forward_channels_last(int dtype, const void* input, void* output,
                                              int64_t* indices, const int64_t* g) {
  return with_type<false>(dtype, [&](auto t) {
    using T = decltype(t);
    return max_pool2d_forward_channels_last<T>(
        static_cast<const T*>(input), static_cast<T*>(output), indices, pool_geometry(g), nullptr);
  });
}
int emulated_max_pool2d_grad_input(int dtype, const void* grad_output, const int64_t* indices,
                                   const int64_t* out_strides, void* grad_input,
                                   const int64_t* in_strides, int channels_last, const int64_t* g) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return max_pool2d_grad_input<T>(static_cast<const T*>(grad_output), indices,
                                    strides(out_strides), static_cast<T*>(grad_input),
                                    strides(in_strides), channels_last != 0, pool_geometry(g),
                                    nullptr);
  });
}

}  // extern "C"
