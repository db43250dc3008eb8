// Small AVX2 helpers the kernels share: copies of short float rows, lane masks and lane
// sums. The kernels copy plane rows into padded scratch, and a late layer's rows are a few
// dozen bytes, where a call to memcpy costs more than the copy (it showed as a fifth of a
// 14x14 depthwise layer's time).
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

// Lanes [0, n) of a vector, n <= 8, as a mask for maskload (or, cast, for AND).
__attribute__((target("avx2"))) inline __m256i first_lanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// out[j] += v[j] for j < n <= 4.
__attribute__((target("avx2"))) inline void add_to_first_lanes(float* out, int n, __m128 v) {
  if (n == 4) {
    _mm_storeu_ps(out, _mm_add_ps(_mm_loadu_ps(out), v));
    return;
  }
  const __m128i lanes = _mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3));
  _mm_maskstore_ps(out, lanes, _mm_add_ps(_mm_maskload_ps(out, lanes), v));
}

// The sum of the eight lanes.
__attribute__((target("avx2"))) inline float sum_lanes(__m256 v) {
  const __m128 quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
  return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
}

}  // namespace classic_ops::cpu
