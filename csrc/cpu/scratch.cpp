#include "scratch.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include <array>

#include "huge_pages.h"

namespace classic_ops::cpu {
namespace {

// `floats` floats; from `huge_from` bytes on, on transparent huge pages where the system
// grants them (rounded up to whole 2 MB pages).
at::Tensor buffer_of(int64_t floats, int64_t huge_from) {
  const int64_t bytes = floats * static_cast<int64_t>(sizeof(float));
  const int64_t rounded = bytes < huge_from ? bytes : (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  return empty_on_huge_pages({rounded / static_cast<int64_t>(sizeof(float))}, at::kFloat,
                             at::MemoryFormat::Contiguous, huge_from)
      .narrow(0, 0, floats);
}

}  // namespace

// Packs from 1 MB on, so that rounding up wastes at most half: the weight cache holds up
// to 64 of them.
at::Tensor new_buffer(int64_t floats) { return buffer_of(floats, kHugePageBytes / 2); }

at::Tensor scratch(Scratch use, at::IntArrayRef sizes) {
  thread_local std::array<at::Tensor, static_cast<size_t>(Scratch::kCount)> buffers;
  const int64_t floats = c10::multiply_integers(sizes);
  if (floats * static_cast<int64_t>(sizeof(float)) > kMaxScratchBytes) return new_buffer(floats).view(sizes);
  at::Tensor& buffer = buffers[static_cast<size_t>(use)];
  if (!buffer.defined() || buffer.numel() < floats) {
    buffer.reset();  // the old block first, so the two are never held together
    // From 64 KB on: MobileNet's first layer pads its 3x224x224 input into 612 KB, and on
    // 4 KB pages ran in 0.35 instead of 0.20 ms in a bench process. A thread holds one
    // buffer per use.
    buffer = buffer_of(floats, int64_t{64} << 10);
  }
  return buffer.narrow(0, 0, floats).view(sizes);
}

}  // namespace classic_ops::cpu
