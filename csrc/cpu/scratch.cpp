#include "scratch.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include <array>

namespace classic_ops::cpu {

at::Tensor scratch(Scratch use, at::IntArrayRef sizes) {
  thread_local std::array<at::Tensor, static_cast<size_t>(Scratch::kCount)> buffers;
  const int64_t floats = c10::multiply_integers(sizes);
  if (floats * static_cast<int64_t>(sizeof(float)) > kMaxScratchBytes) {
    return at::empty(sizes, at::TensorOptions().dtype(at::kFloat));
  }
  at::Tensor& buffer = buffers[static_cast<size_t>(use)];
  if (!buffer.defined() || buffer.numel() < floats) {
    buffer.reset();  // the old block first, so the two are never held together
    buffer = at::empty({floats}, at::TensorOptions().dtype(at::kFloat));
  }
  return buffer.narrow(0, 0, floats).view(sizes);
}

}  // namespace classic_ops::cpu
