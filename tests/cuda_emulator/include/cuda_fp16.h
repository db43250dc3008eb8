// Host stand-in for cuda_fp16.h (emulator): IEEE half as its bits.
#pragma once

#include "half_bits.h"

struct alignas(2) __half {
  uint16_t x;
  __half() = default;
  explicit __half(float f) : x(emulated::half_bits(f)) {}
  operator float() const { return emulated::float_of_half(x); }
};
inline float __half2float(__half h) { return emulated::float_of_half(h.x); }
inline __half __float2half_rn(float f) { return __half(f); }
