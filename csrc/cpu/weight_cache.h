// Repacked weights, kept while the weight tensor is alive and unchanged, so inference does
// not repack on every call. An entry is found again only for the same tensor (same
// TensorImpl, still alive), the same data pointer, the same version counter (bumped by
// in-place updates such as an optimizer step) and the same bytes: writes through `.data`
// bypass the version counter, so a hit also compares the weight with the copy it was
// packed from (a read of the weight, far cheaper than repacking it).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace classic_ops::cpu {

// The layouts weights are packed into, so that one weight may have a pack per kernel.
enum class PackedLayout {
  kDenseBlocksOf8,          // dense_conv2d_avx2.cpp: (K/8, R, S, C, 8), the AVX2 microkernels'
  kDenseBlocksOf16,         // the same in blocks of 16, the AVX-512 microkernels'
  kDepthwiseTapsByChannel,  // depthwise_conv2d_avx2.cpp: (R, S, C)
  kContiguous,              // backend.cpp: a non-contiguous weight made contiguous
};

// Returns pack(weight), from the cache when `weight` is unchanged since it was last packed
// into the same layout. `weight` may be of any dense layout (channels_last included).
at::Tensor cached_pack(const at::Tensor& weight, PackedLayout layout,
                       const std::function<at::Tensor(const at::Tensor&)>& pack);

// The weight as a contiguous NCHW tensor: itself, or its copy kept in the cache (layout
// kContiguous), which the CPU kernels' own packs of it are keyed by in turn.
at::Tensor cached_contiguous(const at::Tensor& weight);

}  // namespace classic_ops::cpu
