// The shapes a kernel works on, as plain structs: shared by the C++ op layer and the CUDA
// sources, which include no torch headers.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define CLASSIC_OPS_HOST_DEVICE __host__ __device__
#else
#define CLASSIC_OPS_HOST_DEVICE
#endif

namespace classic_ops {

struct ConvGeometry {
  int64_t batch, in_channels, in_h, in_w;
  int64_t out_channels, kernel_h, kernel_w, out_h, out_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;

  CLASSIC_OPS_HOST_DEVICE int64_t in_channels_per_group() const { return in_channels / groups; }
  CLASSIC_OPS_HOST_DEVICE int64_t out_channels_per_group() const { return out_channels / groups; }
};

// A strided convolution's grad_input is that of the stride-1 convolution whose output is
// grad_output spread out by the stride with zeros between (spread_by_stride in
// grad_input_as_forward.h): stride^2 times the multiplies, but through the fast forward
// kernels. This is that stride-1 geometry; its output covers every window position.
inline ConvGeometry with_unit_stride(const ConvGeometry& g) {
  ConvGeometry u = g;
  u.stride_h = u.stride_w = 1;
  u.out_h = g.in_h + 2 * g.pad_h - g.dilation_h * (g.kernel_h - 1);
  u.out_w = g.in_w + 2 * g.pad_w - g.dilation_w * (g.kernel_w - 1);
  return u;
}

// With stride 1, grad_input is the forward convolution (correlation) of grad_output,
// padded by dilation * (kernel - 1) - padding, with the filter flipped in space and its
// input and output channels swapped. This is that forward convolution's geometry; its
// padding is negative where the original padding exceeds the window, which no forward
// kernel takes.
inline ConvGeometry stride1_grad_input_as_forward(const ConvGeometry& g) {
  ConvGeometry t = g;
  t.in_channels = g.out_channels;
  t.out_channels = g.in_channels;
  t.in_h = g.out_h;
  t.in_w = g.out_w;
  t.out_h = g.in_h;
  t.out_w = g.in_w;
  t.pad_h = g.dilation_h * (g.kernel_h - 1) - g.pad_h;
  t.pad_w = g.dilation_w * (g.kernel_w - 1) - g.pad_w;
  return t;
}

// The output position along one axis that reads input position `in_pos` through kernel
// tap `tap`, or -1 where none does: what a grad_input gather sums over. Index is int64_t,
// or int where the caller knows every position fits.
template <typename Index>
CLASSIC_OPS_HOST_DEVICE inline Index reading_output(Index in_pos, Index tap, Index stride, Index pad,
                                                    Index dilation, Index out) {
  const Index reach = in_pos + pad - tap * dilation;  // the output position times the stride
  if (reach < 0 || reach % stride != 0 || reach / stride >= out) return -1;
  return reach / stride;
}

struct PoolGeometry {
  int64_t batch, channels, in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

}  // namespace classic_ops
