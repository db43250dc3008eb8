// Temporaries of the CPU kernels (padded copies, packed filters, partial sums) kept between
// calls, so that a call does not fetch megabytes of fresh pages. glibc hands large blocks
// out by mmap, or from a heap it trims, depending on what was freed before: a block freed
// and allocated again then comes back as new pages, and the page faults (about 1 us per
// 4 KB page here) cost more than the arithmetic on them. ResNet's 7x7/2 first layer's
// backward took 1000 faults a call this way; native's 512x7x7 backward took 4600, in the
// same process. Which way a process went depended on the layers run before: the source of
// the two speeds at which this machine ran the same layer in different processes.
#pragma once

#include <ATen/core/Tensor.h>

namespace classic_ops::cpu {

// What a scratch buffer holds: one buffer per use, as one call may hold several at once.
enum class Scratch {
  kInput,         // the input, padded or transposed
  kGradOutput,    // grad_output, padded or transposed
  kPhase,         // stride phases of an input or grad_output
  kPackedFilter,  // a weight packed for the kernel that reads it
  kSums,          // partial sums, or an output with columns still to drop
  kCount
};

// A float32 tensor of `sizes`, uninitialized, in memory kept per thread and use: valid
// until the same thread asks for the same use again. Requests above kMaxScratchBytes get
// memory of their own, so a thread keeps at most that much per use.
at::Tensor scratch(Scratch use, at::IntArrayRef sizes);

constexpr int64_t kMaxScratchBytes = int64_t{64} << 20;

}  // namespace classic_ops::cpu
