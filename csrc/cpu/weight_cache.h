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

// Returns pack(weight), from the cache when `weight` is unchanged since it was last packed
// with the same `layout` tag.
at::Tensor cached_pack(const at::Tensor& weight, int layout,
                       const std::function<at::Tensor(const at::Tensor&)>& pack);

}  // namespace classic_ops::cpu
