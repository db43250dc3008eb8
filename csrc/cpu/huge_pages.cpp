#include "huge_pages.h"

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <ATen/native/TensorFactories.h>
#include <c10/core/Allocator.h>
#include <c10/util/accumulate.h>

#include <cstdlib>
#include <deque>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace classic_ops::cpu {
namespace {

#if defined(__linux__) && defined(MADV_HUGEPAGE)
// Freed blocks of kReusedFrom bytes or more, kept for the next allocation of the same size
// (in whole 2 MB pages). glibc maps blocks that large afresh on every allocation (smaller
// ones it reuses from its heap), and the kernel zeroes each fresh page at its first touch:
// VGG-16's first layer at batch 8 (a 103 MB output) spent a quarter of its time there, 13.3
// against 8.5 ms with the block kept. Kept blocks beyond the limit (1 GB unless set) are
// released, the least recently freed first.
class BlockCache {
 public:
  static constexpr size_t kReusedFrom = size_t{32} << 20;

  // A block of `bytes`, 2 MB-aligned: a kept one of that size, else a new one.
  void* allocate(size_t bytes) {
    const bool keepable = bytes >= kReusedFrom;
    if (keepable) {
      bytes = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto block = kept_.begin(); block != kept_.end(); ++block) {
        if (block->second != bytes) continue;
        void* data = block->first;
        kept_.erase(block);
        kept_bytes_ -= bytes;
        live_.emplace(data, bytes);
        return data;
      }
    }
    void* data = nullptr;
    if (posix_memalign(&data, kHugePageBytes, bytes) != 0) {
      release_kept();  // the memory they hold may be what is missing
      if (posix_memalign(&data, kHugePageBytes, bytes) != 0) throw std::bad_alloc();
    }
    madvise(data, bytes, MADV_HUGEPAGE);  // advice: where refused, plain pages serve
    if (keepable) {
      std::lock_guard<std::mutex> lock(mutex_);
      live_.emplace(data, bytes);
    }
    return data;
  }

  void release(void* data) {
    std::vector<void*> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto live = live_.find(data);
      if (live == live_.end()) {
        dropped.push_back(data);
      } else {
        kept_.emplace_front(data, live->second);
        kept_bytes_ += live->second;
        live_.erase(live);
        dropped = take_beyond(limit_);
      }
    }
    free_all(dropped);
  }

  size_t release_kept() {
    std::vector<void*> dropped;
    size_t released = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      released = kept_bytes_;
      dropped = take_beyond(0);
    }
    free_all(dropped);
    return released;
  }

  size_t kept_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return kept_bytes_;
  }

  // Sets the limit, releasing what it no longer allows; returns the one before.
  size_t set_limit(size_t bytes) {
    std::vector<void*> dropped;
    size_t previous = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      previous = std::exchange(limit_, bytes);
      dropped = take_beyond(limit_);
    }
    free_all(dropped);
    return previous;
  }

 private:
  // With the lock held: the least recently freed blocks taken out of the cache until at
  // most `bytes` stay, for the caller to free once it has let go of the lock.
  std::vector<void*> take_beyond(size_t bytes) {
    std::vector<void*> taken;
    while (kept_bytes_ > bytes) {
      const auto [data, size] = kept_.back();
      kept_.pop_back();
      kept_bytes_ -= size;
      taken.push_back(data);
    }
    return taken;
  }

  static void free_all(const std::vector<void*>& blocks) {
    for (void* block : blocks) std::free(block);
  }

  std::mutex mutex_;
  std::deque<std::pair<void*, size_t>> kept_;  // most recently freed first
  size_t kept_bytes_ = 0;
  size_t limit_ = size_t{1} << 30;
  std::unordered_map<void*, size_t> live_;  // blocks handed out that are kept once freed
};

// Never destroyed: tensors may be freed after static destructors have run.
BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;
  return *cache;
}

class HugePageAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) override {
    void* data = bytes > 0 ? block_cache().allocate(bytes) : nullptr;
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  static void release(void* data) {
    if (data != nullptr) block_cache().release(data);
  }
};
#endif

}  // namespace

#if defined(__linux__) && defined(MADV_HUGEPAGE)
HugePageAllocator& huge_page_allocator() {
  static HugePageAllocator allocator;
  return allocator;
}
#endif

at::Tensor empty_on_huge_pages(at::IntArrayRef sizes, at::ScalarType dtype, at::MemoryFormat format,
                               int64_t huge_from) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(c10::elementSize(dtype));
  if (bytes >= huge_from) {
    at::Tensor tensor = at::detail::empty_generic(sizes, &huge_page_allocator(),
                                                  c10::DispatchKeySet(c10::DispatchKey::CPU), dtype, format);
    // As at::empty does: a kept block holds what its last user left.
    if (at::globalContext().deterministicAlgorithms() && at::globalContext().deterministicFillUninitializedMemory()) {
      at::native::fill_empty_deterministic_(tensor);
    }
    return tensor;
  }
#endif
  return at::empty(sizes, at::TensorOptions().dtype(dtype).memory_format(format));
}

#if defined(__linux__) && defined(MADV_HUGEPAGE)
bool on_huge_pages(const at::Tensor& tensor) {
  return tensor.has_storage() &&
         tensor.storage().data_ptr().get_deleter() == huge_page_allocator().raw_deleter();
}
size_t release_kept_blocks() { return block_cache().release_kept(); }
size_t kept_block_bytes() { return block_cache().kept_bytes(); }
size_t set_kept_block_limit(size_t bytes) { return block_cache().set_limit(bytes); }
#else
// Without the huge-page allocator nothing is kept.
bool on_huge_pages(const at::Tensor&) { return false; }
size_t release_kept_blocks() { return 0; }
size_t kept_block_bytes() { return 0; }
size_t set_kept_block_limit(size_t) { return 0; }
#endif

}  // namespace classic_ops::cpu
