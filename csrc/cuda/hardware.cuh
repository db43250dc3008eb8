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

// The block's dynamic shared memory (the size given at launch), 1024-byte aligned (the
// swizzled tiles of the warpgroup MMA need 512).
__device__ __forceinline__ unsigned char* dynamic_shared_memory() {
  extern __shared__ __align__(1024) unsigned char dynamic_shared_bytes[];
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

// ---- Hopper's warpgroup MMA: its instructions exist in sm_90a images only; elsewhere the
// kernels that use them trap, and the host launches them only where CLASSIC_OPS_WITH_SM90A
// says the build has such an image, on a compute capability 9.0 device ----

// Orders this thread's generic-proxy writes to shared memory (cp.async's included) before
// the async proxy's reads that follow a barrier (the warpgroup MMA's operand loads).
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// The 64 accumulators of an m64n128 warpgroup MMA: registers %0 to %63 of the asm, then
// a, b and the scale of d (1: accumulate) as %64 to %66; `shape_and_types` the
// instruction's qualifiers, `scales` its immediate operands (A's and B's scales, then for
// 16-bit types whether each is transposed: neither, both being K-major).
#define CLASSIC_OPS_WGMMA_ACCUMULATORS \
  "%0, %1, %2, %3, %4, %5, %6, %7, " \
  "%8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, " \
  "%40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, " \
  "%56, %57, %58, %59, %60, %61, %62, %63"
#define CLASSIC_OPS_WGMMA_OPERANDS \
      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), \
      "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), \
      "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), \
      "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
      "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
      "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
      "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), \
      "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
      "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), \
      "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
      "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), \
      "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
      "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), \
      "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define CLASSIC_OPS_WGMMA(shape_and_types, immediates)                                 \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                            \
               "wgmma.mma_async.sync.aligned." shape_and_types " {"                     \
               CLASSIC_OPS_WGMMA_ACCUMULATORS "}, %64, %65, p, " immediates ";\n}\n"    \
               : CLASSIC_OPS_WGMMA_OPERANDS                                             \
               : "l"(a), "l"(b), "r"(1))
#endif

// d += A B on a warpgroup's tensor cores over 32 bytes of reduction (16 elements of half
// or bfloat16: m64n128k16; 8 of float as TF32, which reads each float's upper 19 bits:
// m64n128k8), asynchronously (see wgmma_commit and wgmma_wait): A is 64 rows at descriptor
// a, B 128 columns at b (both K-major), d a 64 x 128 float tile of which thread 32w + 4g + t
// of the warpgroup holds, as d[4j] to d[4j + 3], rows 16w + g and 16w + g + 8, columns
// 8j + 2t and 8j + 2t + 1, in the order (g, 2t) (g, 2t + 1) (g + 8, 2t) (g + 8, 2t + 1).
template <typename T>
__device__ __forceinline__ void wgmma_m64n128(float (&d)[64], uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (std::is_same_v<T, __half>) {
    CLASSIC_OPS_WGMMA("m64n128k16.f32.f16.f16", "1, 1, 0, 0");
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    CLASSIC_OPS_WGMMA("m64n128k16.f32.bf16.bf16", "1, 1, 0, 0");
  } else {
    static_assert(std::is_same_v<T, float>);
    CLASSIC_OPS_WGMMA("m64n128k8.f32.tf32.tf32", "1, 1");
  }
#else
  __trap();
#endif
}
#undef CLASSIC_OPS_WGMMA
#undef CLASSIC_OPS_WGMMA_OPERANDS
#undef CLASSIC_OPS_WGMMA_ACCUMULATORS

// Before a batch of warpgroup MMAs: orders the accumulators' registers, last written by
// other instructions, before them.
__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
// Closes the batch of warpgroup MMAs issued since the last commit into one group.
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most kPending of the warpgroup's groups are in flight; d, their
// accumulators, may not be read or written before (the empty asm keeps the compiler from
// moving its uses across the wait).
template <int kPending>
__device__ __forceinline__ void wgmma_wait(float (&d)[64]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...); the caller checks
// cudaGetLastError.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
}

}  // namespace classic_ops::cuda
