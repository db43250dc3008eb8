// Floats as bit patterns, and IEEE half and bfloat16 bit patterns to and from float
// (rounding to nearest even), for the emulator's stand-ins of the CUDA headers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace emulated {

inline uint32_t bits_of(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

inline float float_of_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t half_bits(float f) {
  const uint16_t sign = static_cast<uint16_t>((bits_of(f) >> 16) & 0x8000u);
  const float magnitude = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00u;
  if (magnitude >= 65520.0f) return sign | 0x7c00u;  // rounds to infinity
  if (magnitude < 0x1p-14f) {                        // subnormal: whole units of 2^-24
    return sign | static_cast<uint16_t>(std::nearbyint(double{magnitude} * 0x1p24));
  }
  int exponent;
  double significand = std::frexp(double{magnitude}, &exponent);  // in [0.5, 1)
  double rounded = std::nearbyint(significand * 2048.0);          // 11 significant bits
  if (rounded == 2048.0) {
    rounded = 1024.0;
    ++exponent;
  }
  const int biased = exponent + 14;
  if (biased >= 31) return sign | 0x7c00u;
  return sign | static_cast<uint16_t>(biased << 10) | static_cast<uint16_t>(rounded - 1024.0);
}

inline float float_of_half(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa ? NAN : INFINITY;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  }
  return (h & 0x8000u) ? -magnitude : magnitude;
}

inline uint16_t bfloat16_bits(float f) {
  const uint32_t bits = bits_of(f);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

inline float float_of_bfloat16(uint16_t b) { return float_of_bits(uint32_t{b} << 16); }

}  // namespace emulated
