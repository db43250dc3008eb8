// CPU kernel entry points; cpu/backend.cpp gathers them into the CPU kernel table.
#pragma once

#include "../kernels.h"

namespace classic_ops::cpu {

// Direct convolution over groups; with groups == channels it is the depthwise kernel.
void grouped_conv2d_forward(const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& output,
                            const ConvGeometry& g);
void grouped_conv2d_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                               const at::Tensor& grad_input, const ConvGeometry& g);
void grouped_conv2d_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                const at::Tensor& grad_weight, const ConvGeometry& g);

// Dense (groups == 1) float32 convolution on AVX2/FMA, channels as lanes: over
// channels_last input and output, or NCHW ones (input transposed row by row, output rows
// written from L1).
void dense_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& output,
                               const ConvGeometry& g);

// Rows shorter than this (in pixels) leave much of the channels_last kernel's 6-pixel row
// tiles empty (7 pixels: two tiles; AVX-512's 7-pixel tiles take them whole).
constexpr int64_t kShortRow = 12;

// Whether a stride-1 convolution's forward pass runs faster on the planar kernel (pixels of
// a plane as lanes) than on the channels_last one: where its rows are short and its filter
// 4 MB or more. Measured on 7x7 planes, 2 threads, against the 7-pixel tiles: 512 -> 512
// channels 1.44 against 1.67 ms, 1024 -> 512 2.85 against 3.59 ms, 256 -> 512 0.74-0.84
// against 0.76-0.83 ms; smaller filters ran as fast or faster on the channels_last kernel
// (192 -> 384 0.43 against 0.43 ms, 16 -> 64 0.027 against 0.021 ms; LeNet-5's
// 6x14x14 -> 16 0.023 against 0.016 ms). Their grad_input runs on the channels_last kernel
// (dense_conv2d_grad_input_avx2).
inline bool prefers_planar(const ConvGeometry& g) {
  const int64_t filter_floats = g.out_channels * g.in_channels / g.groups * g.kernel_h * g.kernel_w;
  return g.stride_h == 1 && g.stride_w == 1 && g.out_w < kShortRow && filter_floats >= (int64_t{1} << 20);
}

// Dense float32 convolution (1x1 included) on AVX2/FMA over NCHW input and output, the
// pixels of a plane as lanes and the weight read as it lies: any stride with unit
// dilation, any dilation with stride 1.
void dense_conv2d_forward_planar_avx2(const at::Tensor& input, const at::Tensor& weight,
                                      const at::Tensor& bias, const at::Tensor& output,
                                      const ConvGeometry& g);

// grad_input of a dense float32 convolution through the AVX2 forward kernels
// (grad_input_as_forward.h): with unit dilation phase by phase of the stride, each phase
// through the channels_last or the planar kernel; with dilation through the channels_last
// kernel over grad_output spread by the stride. Returns false, having done nothing, where
// neither applies.
bool dense_conv2d_grad_input_avx2(const at::Tensor& grad_output, const at::Tensor& weight,
                                  const at::Tensor& grad_input, const ConvGeometry& g);

// grad_weight of a 1x1 float32 convolution on AVX2/FMA: over NCHW planes, dot products
// along the planes, with no transposes; over channels_last, dense_conv2d_grad_weight_avx2.
void pointwise_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& grad_weight, const ConvGeometry& g);

// grad_weight of a dense (groups == 1) float32 convolution through the AVX2 microkernel.
void dense_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& grad_weight, const ConvGeometry& g);

// Depthwise float32 convolution on AVX2/FMA over NCHW input and output, any channel
// multiplier, kernel size, stride and dilation.
void depthwise_conv2d_forward_nchw_avx2(const at::Tensor& input, const at::Tensor& weight,
                                        const at::Tensor& bias, const at::Tensor& output,
                                        const ConvGeometry& g);

// grad_weight of a depthwise float32 convolution (any multiplier) on AVX2/FMA over NCHW.
void depthwise_conv2d_grad_weight_nchw_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                            const at::Tensor& grad_weight, const ConvGeometry& g);

// grad_input of a depthwise float32 convolution with channel multiplier 1: into NCHW
// through the NCHW forward kernel (grad_input_as_forward.h), returning false, having done
// nothing, where that does not apply; into channels_last, any geometry, through the
// channels_last forward kernel at stride 1 and by gathering otherwise.
bool depthwise_conv2d_grad_input_avx2(const at::Tensor& grad_output, const at::Tensor& weight,
                                      const at::Tensor& grad_input, const ConvGeometry& g);

// Depthwise float32 convolution with channel multiplier 1 on AVX2/FMA over channels_last
// input and output.
void depthwise_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& output,
                                   const ConvGeometry& g);

// grad_weight of a depthwise float32 convolution with channel multiplier 1 on AVX2/FMA (on
// AVX-512 where use_avx512()) over channels_last grad_output and input.
void depthwise_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& grad_weight, const ConvGeometry& g);

// 1x1 convolution as a matrix product per image.
void pointwise_conv2d_forward(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& output,
                              const ConvGeometry& g);
void pointwise_conv2d_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 const at::Tensor& grad_input, const ConvGeometry& g);
void pointwise_conv2d_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                  const at::Tensor& grad_weight, const ConvGeometry& g);

// float32 max-pooling without indices on AVX2; input and output contiguous in the same
// memory format (NCHW or channels_last).
void max_pool2d_inference_avx2(const at::Tensor& input, const at::Tensor& output,
                               const PoolGeometry& g);

// float32 max-pooling with indices on AVX2 over NCHW with horizontal stride 1 or 2;
// returns false, having done nothing, for anything else.
bool max_pool2d_with_indices_avx2(const at::Tensor& input, const at::Tensor& output,
                                  const at::Tensor& indices, const PoolGeometry& g);

// float32 max-pooling grad_input on AVX2 over channels_last, for indices that each lie in
// their own window (as the forward pass writes them); returns false for anything else,
// having done nothing or written grad_input only in part.
bool max_pool2d_grad_input_avx2(const at::Tensor& grad_output, const at::Tensor& indices,
                                const at::Tensor& grad_input, const PoolGeometry& g);

void max_pool2d_forward(const at::Tensor& input, const at::Tensor& output,
                        const at::Tensor& indices, const PoolGeometry& g);
void max_pool2d_grad_input(const at::Tensor& grad_output, const at::Tensor& indices,
                           const at::Tensor& grad_input, const PoolGeometry& g);

}  // namespace classic_ops::cpu
