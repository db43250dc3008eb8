#include "weight_cache.h"

#include <cstring>
#include <list>
#include <mutex>

namespace classic_ops::cpu {
namespace {

struct Entry {
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> owner;
  const void* data;
  uint32_t version;
  PackedLayout layout;
  // The values `packed` was made from; undefined where the weight is itself a pack of this
  // cache (a channels_last weight's contiguous copy), which only this library holds and
  // never writes: comparing 9 MB twice a call cost a third of a 512x7x7 layer's time.
  at::Tensor original;
  at::Tensor packed;
};

constexpr size_t kCapacity = 64;  // more than the convolutions of any classic network

std::mutex cache_mutex;
std::list<Entry> cache;  // most recently used first

bool matches(const Entry& e, const at::Tensor& weight, uint32_t version, PackedLayout layout) {
  if (e.data != weight.data_ptr() || e.version != version || e.layout != layout ||
      (e.original.defined() && e.original.sizes() != weight.sizes())) {
    return false;
  }
  const auto owner = e.owner.lock();
  return owner.get() == weight.unsafeGetTensorImpl() &&
         (!e.original.defined() ||
          std::memcmp(e.original.const_data_ptr(), weight.const_data_ptr(), weight.nbytes()) == 0);
}

bool is_cached_pack(const at::Tensor& weight) {
  for (const Entry& e : cache) {
    if (e.packed.unsafeGetTensorImpl() == weight.unsafeGetTensorImpl()) return true;
  }
  return false;
}

}  // namespace

at::Tensor cached_pack(const at::Tensor& weight, PackedLayout layout,
                       const std::function<at::Tensor(const at::Tensor&)>& pack) {
  // Inference tensors have no version counter. Dense layouts compare byte for byte with a
  // clone of the same strides.
  if (weight.is_inference() || !weight.is_non_overlapping_and_dense()) return pack(weight);
  const uint32_t version = weight.unsafeGetTensorImpl()->version_counter().current_version();
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    for (auto it = cache.begin(); it != cache.end(); ++it) {
      if (matches(*it, weight, version, layout)) {
        cache.splice(cache.begin(), cache, it);
        return it->packed;
      }
    }
  }
  at::Tensor packed = pack(weight);
  std::lock_guard<std::mutex> lock(cache_mutex);
  const at::Tensor original = is_cached_pack(weight) ? at::Tensor() : weight.clone();
  // One entry per live weight and layout: a training step's update replaces the entry of
  // the step before, and entries of freed weights go, instead of piling up to capacity.
  cache.remove_if([&](const Entry& e) {
    const auto owner = e.owner.lock();
    return !owner || (owner.get() == weight.unsafeGetTensorImpl() && e.layout == layout);
  });
  cache.push_front(Entry{c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(
                             weight.getIntrusivePtr()),
                         weight.data_ptr(), version, layout, original, packed});
  if (cache.size() > kCapacity) cache.pop_back();
  return packed;
}

at::Tensor cached_contiguous(const at::Tensor& weight) {
  if (weight.is_contiguous()) return weight;
  return cached_pack(weight, PackedLayout::kContiguous, [](const at::Tensor& w) { return w.contiguous(); });
}

}  // namespace classic_ops::cpu
