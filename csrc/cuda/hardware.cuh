// What the kernels ask of the GPU beyond plain C++ and the CUDA built-ins: the instructions
// written in inline PTX (cp.async, ldmatrix, mma.sync, the TF32 rounding), a block's dynamic
// shared memory and the kernel launch. They live in this one header so that the CPU
// emulator of the tests (tests/cuda_emulator) can stand in for exactly these and run every
// kernel as written on machines without a GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace classic_ops::cuda {

// The block's dynamic shared memory (the size given at launch), 128-byte aligned.
__device__ __forceinline__ unsigned char* dynamic_shared_memory() {
  extern __shared__ __align__(128) unsigned char dynamic_shared_bytes[];
  return dynamic_shared_bytes;
}

// A shared-memory pointer as the 32-bit address the PTX instructions below take.
__device__ __forceinline__ unsigned shared_address(const void* pointer) {
  return static_cast<unsigned>(__cvta_generic_to_shared(pointer));
}

// Copies 16 bytes global -> shared without passing through registers; with `valid` false
// it writes 16 zero bytes instead (the zero padding of a convolution).
__device__ __forceinline__ void cp_async_16(void* shared, const void* global, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)),
               "l"(global), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Four 8x8 blocks of 16-bit elements (8x4 of 32-bit ones): lanes 8q to 8q + 7 give the
// shared-memory addresses of block q's 16-byte rows, and lane 4g + t receives row g,
// elements 2t and 2t + 1, of each block (of its transpose, for 16-bit elements, with
// kTransposed).
template <bool kTransposed>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], unsigned address) {
  if constexpr (kTransposed) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
  }
}

// d += a b for one m16n8 tile, `shape_and_types` the instruction's qualifiers.
#define CLASSIC_OPS_MMA_SYNC(shape_and_types)                                                   \
  asm volatile("mma.sync.aligned." shape_and_types                                             \
               " {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"            \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))

// d += a b on the tensor cores, one m16n8 tile, float accumulators: m16n8k16 for half and
// bfloat16 operands, m16n8k8 for TF32 ones (T = float, operands already rounded by
// round_to_tf32). Lane 4g + t holds A elements (g, 2t..) (g + 8, 2t..) (g, 2t + 8..)
// (g + 8, 2t + 8..) and B elements (2t.., g) (2t + 8.., g) for 16-bit types, A (g, t)
// (g + 8, t) (g, t + 4) (g + 8, t + 4) and B (t, g) (t + 4, g) for TF32, and sums (g, 2t)
// (g, 2t + 1) (g + 8, 2t) (g + 8, 2t + 1).
template <typename T>
__device__ __forceinline__ void mma_m16n8(float (&d)[4], const uint32_t (&a)[4],
                                          const uint32_t (&b)[2]) {
  if constexpr (std::is_same_v<T, __half>) {
    CLASSIC_OPS_MMA_SYNC("m16n8k16.row.col.f32.f16.f16.f32");
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    CLASSIC_OPS_MMA_SYNC("m16n8k16.row.col.f32.bf16.bf16.f32");
  } else {
    static_assert(std::is_same_v<T, float>);
    CLASSIC_OPS_MMA_SYNC("m16n8k8.row.col.f32.tf32.tf32.f32");
  }
}
#undef CLASSIC_OPS_MMA_SYNC

// A float's bits rounded to TF32, to nearest with ties away from zero.
__device__ __forceinline__ uint32_t round_to_tf32(uint32_t bits) {
  uint32_t rounded;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(rounded) : "f"(__uint_as_float(bits)));
  return rounded;
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...); the caller checks
// cudaGetLastError.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
}

}  // namespace classic_ops::cuda
