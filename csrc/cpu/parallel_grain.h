// How finely the CPU kernels split work between threads. Waking the other core and joining
// it costs about 2 us here, as much as the whole of a LeNet-5 pooling layer; at::parallel_for
// runs a range on the calling thread when it holds fewer tasks than its grain.
#pragma once

#include <algorithm>
#include <cstdint>

namespace classic_ops::cpu {

// Elements (read plus written) below which work stays on one thread.
constexpr int64_t kParallelMinElements = 16384;

// The at::parallel_for grain for tasks that each read and write `elements` elements.
inline int64_t grain_for(int64_t elements) {
  return std::max<int64_t>(1, kParallelMinElements / std::max<int64_t>(1, elements));
}

}  // namespace classic_ops::cpu
