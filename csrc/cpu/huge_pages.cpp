#include "huge_pages.h"

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/util/accumulate.h>

#include <cstdlib>
#include <new>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace classic_ops::cpu {
namespace {

#if defined(__linux__) && defined(MADV_HUGEPAGE)
class HugePageAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) override {
    void* data = nullptr;
    if (bytes > 0) {
      if (posix_memalign(&data, kHugePageBytes, bytes) != 0) throw std::bad_alloc();
      madvise(data, bytes, MADV_HUGEPAGE);  // advice: where refused, plain pages serve
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  static void release(void* data) { std::free(data); }
};
#endif

}  // namespace

at::Tensor empty_on_huge_pages(at::IntArrayRef sizes, at::ScalarType dtype, at::MemoryFormat format,
                               int64_t huge_from) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(c10::elementSize(dtype));
  if (bytes >= huge_from) {
    static HugePageAllocator allocator;
    return at::detail::empty_generic(sizes, &allocator, c10::DispatchKeySet(c10::DispatchKey::CPU), dtype, format);
  }
#endif
  return at::empty(sizes, at::TensorOptions().dtype(dtype).memory_format(format));
}

}  // namespace classic_ops::cpu
