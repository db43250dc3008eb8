#include <ATen/ATen.h>

#include "huge_pages.h"
#include "isa.h"
#include "kernels.h"
#include "weight_cache.h"

namespace classic_ops {
namespace {

constexpr at::MemoryFormat kNCHW = at::MemoryFormat::Contiguous;

constexpr at::MemoryFormat kChannelsLast = at::MemoryFormat::ChannelsLast;

// The AVX2 grad_input where it applies, else the route's reference kernel, which indexes
// NCHW: a channels_last kernel set's tensors go through NCHW copies for it.
template <decltype(cpu::dense_conv2d_grad_input_avx2)* avx2,
          decltype(cpu::grouped_conv2d_grad_input)* reference>
void grad_input_avx2_or(const at::Tensor& grad_output, const at::Tensor& weight,
                        const at::Tensor& grad_input, const ConvGeometry& g) {
  if (avx2(grad_output, weight, grad_input, g)) return;
  if (grad_input.is_contiguous()) {
    reference(grad_output.contiguous(), cpu::cached_contiguous(weight), grad_input, g);
    return;
  }
  const at::Tensor nchw = at::empty(grad_input.sizes(), grad_input.options());
  reference(grad_output.contiguous(), cpu::cached_contiguous(weight), nchw, g);
  grad_input.copy_(nchw);
}

const ConvKernels& select_conv(ConvRoute route, const ConvGeometry& g, at::ScalarType dtype,
                               at::MemoryFormat input_format) {
  // Grouped direct loops serve every convolution, depthwise included; in float32 on AVX2, a
  // register-tiled kernel serves dense ones (groups 1, any kernel size, 1x1 included), a
  // column-vectorized kernel depthwise ones over NCHW (any multiplier) and a
  // channels-vectorized kernel channels_last depthwise ones with channel multiplier 1.
  // Dense ones over NCHW with short rows or few input channels take a kernel with a plane's
  // pixels as lanes; the others the channels_last kernel, which transposes NCHW itself.
  static const ConvKernels grouped = {kNCHW, cpu::grouped_conv2d_forward,
                                      cpu::grouped_conv2d_grad_input,
                                      cpu::grouped_conv2d_grad_weight};
  static const ConvKernels pointwise = {kNCHW, cpu::pointwise_conv2d_forward,
                                        cpu::pointwise_conv2d_grad_input,
                                        cpu::pointwise_conv2d_grad_weight};
  // The channels_last sets run their backward passes over channels_last tensors too (the
  // AVX2 grad_input and grad_weight kernels take either layout), so a channels_last model
  // converts nothing: through NCHW, ATen's transposing copies of grad_output, input and
  // grad_input took most of a MobileNet layer's backward time. The dense grad_input reads
  // a channels_last weight in place (cpu::dense_conv2d_grad_input_avx2).
  static const ConvKernels dense_avx2 = {
      kChannelsLast,
      cpu::dense_conv2d_forward_avx2,
      grad_input_avx2_or<cpu::dense_conv2d_grad_input_avx2, cpu::grouped_conv2d_grad_input>,
      cpu::dense_conv2d_grad_weight_avx2,
      /*forward_relu=*/nullptr,
      /*weight_layout=*/kNCHW,
      /*backward_layout=*/kChannelsLast,
      /*grad_weight_in_either_layout=*/true,
      /*forward_weight_in_either_layout=*/false,
      /*grad_input_weight_in_either_layout=*/true};
  constexpr auto depthwise_grad_input =
      grad_input_avx2_or<cpu::depthwise_conv2d_grad_input_avx2, cpu::grouped_conv2d_grad_input>;
  static const ConvKernels depthwise_avx2 = {kChannelsLast,
                                             cpu::depthwise_conv2d_forward_avx2,
                                             depthwise_grad_input,
                                             cpu::depthwise_conv2d_grad_weight_avx2,
                                             /*forward_relu=*/nullptr,
                                             /*weight_layout=*/kNCHW,
                                             /*backward_layout=*/kChannelsLast};
  static const ConvKernels pointwise_avx2 = {
      kChannelsLast,
      cpu::dense_conv2d_forward_avx2,
      grad_input_avx2_or<cpu::dense_conv2d_grad_input_avx2, cpu::pointwise_conv2d_grad_input>,
      cpu::pointwise_conv2d_grad_weight_avx2,
      /*forward_relu=*/nullptr,
      /*weight_layout=*/kNCHW,
      /*backward_layout=*/kChannelsLast};
  static const ConvKernels depthwise_nchw_avx2 = {kNCHW, cpu::depthwise_conv2d_forward_nchw_avx2,
                                                  depthwise_grad_input,
                                                  cpu::depthwise_conv2d_grad_weight_nchw_avx2};
  // 1x1 over NCHW: a matrix product over the planes as they are, without transposes.
  static const ConvKernels pointwise_nchw_avx2 = {kNCHW, cpu::dense_conv2d_forward_planar_avx2,
                                                  pointwise_avx2.grad_input,
                                                  pointwise_avx2.grad_weight};
  // The planar forward kernel reads the weight where it lies, either format, and so does
  // grad_input (whose planar phases read an NCHW copy, kept in the weight cache).
  static const ConvKernels dense_planar_avx2 = {kNCHW,
                                                cpu::dense_conv2d_forward_planar_avx2,
                                                dense_avx2.grad_input,
                                                dense_avx2.grad_weight,
                                                /*forward_relu=*/nullptr,
                                                /*weight_layout=*/kNCHW,
                                                /*backward_layout=*/kNCHW,
                                                /*grad_weight_in_either_layout=*/true,
                                                /*forward_weight_in_either_layout=*/true,
                                                /*grad_input_weight_in_either_layout=*/true};
  // The planar set for channels_last tensors: forward through NCHW copies (small: it serves
  // short rows), backward over channels_last tensors as the channels_last set (whose
  // grad_input takes the planar kernel for these geometries too). ResNet-18's 512x7x7 -> 512
  // forward, 2 threads: 1.2-1.7 ms on the channels_last kernel, 0.84-0.96 ms so (same
  // machine and hour).
  static const ConvKernels dense_planar_channels_last_avx2 = [] {
    ConvKernels kernels = dense_planar_avx2;
    kernels.backward_layout = kChannelsLast;
    return kernels;
  }();
  // The channels_last kernel over NCHW tensors, which it converts itself.
  static const ConvKernels dense_nchw_avx2 = {kNCHW,
                                              cpu::dense_conv2d_forward_avx2,
                                              dense_avx2.grad_input,
                                              dense_avx2.grad_weight,
                                              /*forward_relu=*/nullptr,
                                              /*weight_layout=*/kNCHW,
                                              /*backward_layout=*/kNCHW,
                                              /*grad_weight_in_either_layout=*/true,
                                              /*forward_weight_in_either_layout=*/false,
                                              /*grad_input_weight_in_either_layout=*/true};
  const bool avx2 = dtype == at::kFloat && cpu::use_avx2();
  const bool nchw = input_format == at::MemoryFormat::Contiguous;
  switch (route) {
    case ConvRoute::Pointwise: return avx2 ? (nchw ? pointwise_nchw_avx2 : pointwise_avx2) : pointwise;
    case ConvRoute::Depthwise:
      if (!avx2) return grouped;
      return nchw || g.out_channels != g.in_channels ? depthwise_nchw_avx2 : depthwise_avx2;
    case ConvRoute::Direct: break;
  }
  if (!avx2 || g.groups != 1) return grouped;
  // Over NCHW, the planar kernel where it runs faster: cpu::prefers_planar, and first layers
  // (fewer input channels than a lane block) with stride 1, whose output is large for their
  // arithmetic and which the channels_last kernel writes to NCHW through 8x8 transposes
  // (VGG-16's 3x224x224 -> 64: 1.15 against 1.60 ms at batch 1, 13.3 against 17.3 ms at
  // batch 8, where perf put a fifth of the time in the transposes; LeNet-5's 1x32x32 -> 6
  // as fast on both). Elsewhere the channels_last kernel, which transposes NCHW input and
  // writes NCHW rows itself (strided first layers, whose planar stride phases each pass over
  // the whole output: MobileNet's 3x3/2 0.23 against 0.37 ms, AlexNet's 11x11/4 0.77 against
  // 1.19 ms, ResNet's 7x7/2 1.21 against 1.55 ms).
  if (!nchw) return cpu::prefers_planar(g) ? dense_planar_channels_last_avx2 : dense_avx2;
  constexpr int64_t kLaneBlock = 8;
  const bool first_layer = g.in_channels < kLaneBlock && g.stride_h == 1 && g.stride_w == 1;
  return first_layer || cpu::prefers_planar(g) ? dense_planar_avx2 : dense_nchw_avx2;
}

// A channels_last model's weights are channels_last too: their contiguous copies are kept
// in the weight cache, so the kernels' own packs of them (keyed by the tensor they are
// handed) are found again instead of remade on every call (ResNet-18's 512x7x7 -> 512
// layer took 3.6 instead of 1.7 ms so).
at::Tensor contiguous_weight(const at::Tensor& weight, at::MemoryFormat format) {
  TORCH_INTERNAL_ASSERT(format == kNCHW, "the CPU kernels take NCHW weights");
  return cpu::cached_contiguous(weight);
}

// Results above 32 MB go on transparent huge pages. glibc maps blocks that large afresh on
// every allocation (its mmap threshold grows with use up to 32 MB): VGG-16's first layer
// at batch 8, 103 MB, one thread 70 -> 31 ms, two threads 40 -> 16 ms. Smaller blocks it
// reuses from its heap without a page fault, where a 2 MB-aligned allocation would be
// mapped afresh each call (VGG-16's first layer at batch 1, 12.8 MB: 1.5 -> 2.3 ms).
at::Tensor empty_result(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat format) {
  constexpr int64_t kAlwaysMapped = int64_t{32} << 20;
  return cpu::empty_on_huge_pages(sizes, options.dtype().toScalarType(), format, kAlwaysMapped + 1);
}

}  // namespace

const BackendKernels& cpu_kernels() {
  static const BackendKernels kernels = {select_conv,
                                         {cpu::max_pool2d_forward, cpu::max_pool2d_grad_input},
                                         contiguous_weight, empty_result};
  return kernels;
}

}  // namespace classic_ops
