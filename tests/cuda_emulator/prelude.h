// Included ahead of every kernel source the emulator compiles: CUDA's keywords and
// built-in variables as host C++. A block's threads run one at a time as fibers
// (emulator.h), so a __shared__ variable is a static one, shared by all of them.
#pragma once

#include <cuda_runtime_api.h>

#include <type_traits>

#include "emulator.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static

#define threadIdx (emulated::thread_index())
#define blockIdx (emulated::block_index())
#define blockDim (emulated::block_dim())
#define gridDim (emulated::grid_dim())

inline void __syncthreads() { emulated::sync_threads(); }

// CUDA's min and max take mixed integer types.
template <class A, class B>
std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <class A, class B>
std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}
