// Temporaries of the CPU kernels (padded copies, stride phases, packed filters, partial
// sums) kept between calls, on transparent huge pages from 64 KB on. Fresh blocks cost page
// faults (about 1 us per 4 KB page here) whenever glibc had returned the memory: ResNet's
// 7x7/2 first layer's backward took 1000 a call in a bench-like sequence of layers. And on
// 4 KB pages, where a process's buffers happened to land in physical memory set its speed
// for its lifetime: that layer's grad_input ran in 2.4 or 5-6 ms by process (five runs:
// 2.31-2.35 ms on huge pages), the source of the two speeds at which this machine ran the
// same layer in different processes.
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
  kPartialSums,   // sums of a share of the work, to be added to kSums
  kCount
};

// A float32 tensor of `sizes`, uninitialized, in memory kept per thread and use: valid
// until the same thread asks for the same use again. Requests above kMaxScratchBytes get
// memory of their own, so a thread keeps at most that much per use. (VGG-16's 64x224x224
// layer at batch 8 pads its input into 105 MB: allocated afresh on 4 KB pages, 25,000 page
// faults a call.)
at::Tensor scratch(Scratch use, at::IntArrayRef sizes);

constexpr int64_t kMaxScratchBytes = int64_t{256} << 20;

// A new float32 buffer of `floats` elements, uninitialized; from 1 MB on, on transparent
// huge pages where the system grants them: for buffers read on every call, such as packed
// weights, whose speed would otherwise depend on where their 4 KB pages landed.
at::Tensor new_buffer(int64_t floats);

}  // namespace classic_ops::cpu
