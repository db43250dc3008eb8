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

struct PoolGeometry {
  int64_t batch, channels, in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

}  // namespace classic_ops
