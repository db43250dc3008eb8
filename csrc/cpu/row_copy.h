// Copies of short float rows for the AVX2 kernels, which copy plane rows into padded
// scratch: a late layer's rows are a few dozen bytes, where a call to memcpy costs more
// than the copy (it showed as a fifth of a 14x14 depthwise layer's time).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace classic_ops::cpu {

// dst[j] = src[j], j < n; eight floats per instruction, the last few one by one.
__attribute__((target("avx2"))) inline void copy_row(const float* src, int64_t n, float* dst) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, _mm256_loadu_ps(src + j));
  for (; j < n; ++j) dst[j] = src[j];
}

}  // namespace classic_ops::cpu
