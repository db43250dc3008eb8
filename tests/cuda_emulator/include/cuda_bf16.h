// Host stand-in for cuda_bf16.h (emulator): bfloat16 as its bits.
#pragma once

#include "half_bits.h"

struct alignas(2) __nv_bfloat16 {
  uint16_t x;
  __nv_bfloat16() = default;
  explicit __nv_bfloat16(float f) : x(emulated::bfloat16_bits(f)) {}
  operator float() const { return emulated::float_of_bfloat16(x); }
};
inline float __bfloat162float(__nv_bfloat16 b) { return emulated::float_of_bfloat16(b.x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
