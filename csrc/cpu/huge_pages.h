// CPU tensors on transparent huge pages. A fresh 4 KB page costs a page fault on first
// touch: VGG-16's first layer at batch 8 writes a 103 MB output, 25,000 faults a call,
// which took 39 of its 70 ms on one thread and kept two threads at 1.5-1.8 times one;
// glibc maps blocks that large afresh on every allocation. On 2 MB pages the faults are
// 512 times fewer.
#pragma once

#include <ATen/core/Tensor.h>

namespace classic_ops::cpu {

constexpr int64_t kHugePageBytes = int64_t{2} << 20;

// A new uninitialized CPU tensor like at::empty; from `huge_from` bytes on, on Linux, its
// memory is 2 MB-aligned and advised onto transparent huge pages (MADV_HUGEPAGE; plain
// pages where the system refuses). Its storage stays resizable, through the same allocator.
// Blocks of 32 MB or more (those glibc would map afresh) are kept once freed, up to a limit
// (1 GB unless set), for the next allocation of the same size: fresh pages cost the
// kernel's zeroing.
at::Tensor empty_on_huge_pages(at::IntArrayRef sizes, at::ScalarType dtype, at::MemoryFormat format,
                               int64_t huge_from);

// Whether a tensor's memory came from empty_on_huge_pages' allocator.
bool on_huge_pages(const at::Tensor& tensor);

// Releases the kept blocks to the system; returns their bytes.
size_t release_kept_blocks();

// The bytes of the blocks kept.
size_t kept_block_bytes();

// Sets how many bytes of freed blocks may be kept (0: none), releasing the excess; returns
// the limit before.
size_t set_kept_block_limit(size_t bytes);

}  // namespace classic_ops::cpu
