// A CPU emulator of the CUDA execution model, enough to run this project's kernels as they
// are written, on machines without a GPU (the tests' cuda_emulator package builds it and
// calls the launchers through entry_points.cpp).
//
// Every thread of a block is a fiber; blocks run one after another, in a shuffled order,
// and the runnable threads of a block in a shuffled order between barriers. The checks:
//  - __syncthreads waits for every thread still running; ldmatrix and mma.sync wait for
//    all 32 lanes of the warp, and fail if some lane has exited or waits elsewhere;
//  - cp.async needs 16-byte aligned addresses, a source inside a buffer the caller
//    registered (where it registers them) and a destination inside the block's dynamic
//    shared memory; its copies
//    land either when issued or only at the cp.async.wait_group that covers them (the two
//    extremes a GPU may show: reading a stage too early, or overwriting one still being
//    read, shows up in one of them); a thread that exits with copies not waited for fails;
//  - shared memory starts as 0xff bytes (NaN in every float type);
//  - more than 48 KB of dynamic shared memory needs cudaFuncSetAttribute first.
// mma.sync adds exact products in double, then rounds to float once per instruction; the
// GPU's tensor cores round differently within that. A failed check abandons the grid and
// is reported as CUDA reports a kernel fault: cudaGetLastError returns an error and
// nothing more runs until the next configure; last_error says which check failed, where.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace emulated {

const dim3& thread_index();
const dim3& block_index();
const dim3& block_dim();
const dim3& grid_dim();
void sync_threads();

unsigned char* dynamic_shared_memory();
unsigned shared_address(const void* pointer);

void cp_async_16(void* shared, const void* global, bool valid);
void cp_async_commit();
void cp_async_wait(int pending);

void ldmatrix_x4(uint32_t (&r)[4], unsigned address, bool transposed);
enum class Operands { kHalf, kBfloat16, kTf32 };
void mma_m16n8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], Operands operands);
uint32_t round_to_tf32(uint32_t bits);

// The warpgroup MMA, asynchronous as cp.async is: each thread's share of an m64n128 over
// 32 bytes of reduction (m64n128k16 for 16-bit operands, m64n128k8 for TF32; its 64
// accumulators in the PTX ISA's layout) is computed from shared memory as it is
// either at the wgmma_wait that covers it, where copies land at issue, or when issued,
// where they land at their wait (so a stage refilled before its MMAs are done, or read
// before its copies are, fails in one of the two);
// descriptors are decoded as the PTX ISA defines them (K-major, 64- or 128-byte swizzle), and
// shared memory written by cp.async and read by the MMA must have been fenced
// (fence_proxy_async) by the thread that wrote it.
void fence_proxy_async();
void wgmma_m64n128(float (&d)[64], uint64_t a, uint64_t b, Operands operands);
void wgmma_commit();
void wgmma_wait(int pending);

void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const void* kernel,
              const std::function<void()>& thread_body);

// For entry_points.cpp: the buffers cp.async may read (once clear_buffers has been called:
// before, as in the op library, whose tensors nobody registers, sources go unchecked);
// when its copies land and the seed of the shuffled orders, for the launches that follow
// (clears any error).
void register_buffer(const void* data, size_t bytes);
void clear_buffers();
enum class CopiesLand { kAtIssue, kAtWait };
void configure(CopiesLand copies, unsigned seed);
const char* last_error();  // empty when none

}  // namespace emulated
