#include "isa.h"

#include <atomic>

namespace classic_ops::cpu {
namespace {
std::atomic<bool> avx2_enabled{true};
}

bool cpu_has_avx2_fma() {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
}

bool use_avx2() { return avx2_enabled.load(std::memory_order_relaxed) && cpu_has_avx2_fma(); }

void set_avx2_enabled(bool enabled) { avx2_enabled.store(enabled, std::memory_order_relaxed); }

}  // namespace classic_ops::cpu
