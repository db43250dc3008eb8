#include "scratch.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include <array>
#include <cstdlib>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace classic_ops::cpu {
namespace {

constexpr int64_t kHugePage = int64_t{2} << 20;

// `floats` floats; from `huge_from` bytes on, on transparent huge pages where the system
// grants them (rounded up to whole 2 MB pages).
at::Tensor buffer_of(int64_t floats, int64_t huge_from) {
  const auto options = at::TensorOptions().dtype(at::kFloat);
  const int64_t bytes = floats * static_cast<int64_t>(sizeof(float));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes >= huge_from) {
    const int64_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* data = nullptr;
    if (posix_memalign(&data, kHugePage, rounded) == 0) {
      madvise(data, rounded, MADV_HUGEPAGE);  // advice: where refused, plain pages serve
      return at::from_blob(data, {floats}, [](void* p) { std::free(p); }, options);
    }
  }
#endif
  return at::empty({floats}, options);
}

}  // namespace

// Packs from 1 MB on, so that rounding up wastes at most half: the weight cache holds up
// to 64 of them.
at::Tensor new_buffer(int64_t floats) { return buffer_of(floats, kHugePage / 2); }

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
