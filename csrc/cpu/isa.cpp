#include "isa.h"

#include <atomic>

namespace classic_ops::cpu {
namespace {
std::atomic<bool> avx2_enabled{true};
std::atomic<bool> avx512_enabled{true};
}

bool cpu_has_avx2_fma() {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
}

bool cpu_has_avx512() {
  static const bool supported = cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f");
  return supported;
}

bool use_avx2() { return avx2_enabled.load(std::memory_order_relaxed) && cpu_has_avx2_fma(); }

bool use_avx512() { return use_avx2() && avx512_enabled.load(std::memory_order_relaxed) && cpu_has_avx512(); }

void set_avx2_enabled(bool enabled) { avx2_enabled.store(enabled, std::memory_order_relaxed); }

void set_avx512_enabled(bool enabled) { avx512_enabled.store(enabled, std::memory_order_relaxed); }

}  // namespace classic_ops::cpu
