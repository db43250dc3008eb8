// The emulator's stand-in for csrc/cuda/hardware.cuh: the same functions, carried out by
// emulator.cpp on the fibers of the current block.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emulator.h"

namespace classic_ops::cuda {

inline unsigned char* dynamic_shared_memory() { return emulated::dynamic_shared_memory(); }

inline unsigned shared_address(const void* pointer) { return emulated::shared_address(pointer); }

inline void cp_async_16(void* shared, const void* global, bool valid) {
  emulated::cp_async_16(shared, global, valid);
}
inline void cp_async_commit() { emulated::cp_async_commit(); }
template <int kPending>
void cp_async_wait() {
  emulated::cp_async_wait(kPending);
}

template <bool kTransposed>
void ldmatrix_x4(uint32_t (&r)[4], unsigned address) {
  emulated::ldmatrix_x4(r, address, kTransposed);
}

// The tensor cores' operand type for elements of type T (float: TF32).
template <typename T>
constexpr emulated::Operands operands_of() {
  if constexpr (std::is_same_v<T, __half>) {
    return emulated::Operands::kHalf;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return emulated::Operands::kBfloat16;
  } else {
    static_assert(std::is_same_v<T, float>);
    return emulated::Operands::kTf32;
  }
}

template <typename T>
void mma_m16n8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  emulated::mma_m16n8(d, a, b, operands_of<T>());
}

inline uint32_t round_to_tf32(uint32_t bits) { return emulated::round_to_tf32(bits); }

inline void fence_proxy_async() { emulated::fence_proxy_async(); }

template <typename T>
void wgmma_m64n128(float (&d)[64], uint64_t a, uint64_t b) {
  emulated::wgmma_m64n128(d, a, b, operands_of<T>());
}
// Nothing to order: the emulated MMAs read and write the accumulators when they run.
inline void wgmma_fence() {}
inline void wgmma_commit() { emulated::wgmma_commit(); }
template <int kPending>
void wgmma_wait(float (&)[64]) {
  emulated::wgmma_wait(kPending);
}

template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                   cudaStream_t, Args&&... args) {
  // Converted to the parameter types once, as a launch does; every thread gets a copy.
  const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  emulated::run_grid(grid, block, shared_bytes, reinterpret_cast<const void*>(kernel),
                     [&] { std::apply(kernel, params); });
}

}  // namespace classic_ops::cuda
