// Small AVX2 helpers the kernels share: copies of short float rows, lane masks and adds to
// the first lanes (the kernels copy plane rows into padded scratch, and a late layer's rows are a few
// dozen bytes, where a call to memcpy costs more than the copy: it showed as a fifth of a
// 14x14 depthwise layer's time); and Avx2Vectors, the vector type the microkernel bodies
// are written over (avx512_vectors.h has the AVX-512 one).
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

// 8 lanes a ymm register. The microkernel bodies take a vector type V: V::Vec, V::Mask,
// V::kLanes and load, broadcast, fma, store, mask(n) (the first n lanes), load_masked,
// store_masked, load_zeroing(p, m) (the lanes of m, the others zero, where a whole vector
// at p may be read: cheaper than load_masked on AVX2, which is slow on AMD) and
// add_lane_sums(out, n, a, b, c, d) (out[j] += the sum of the lanes of the j-th of a, b,
// c, d, for j < n), inline under the type's target.
#define AVX2_VECTOR_TARGET __attribute__((target("avx2,fma")))
struct Avx2Vectors {
  using Vec = __m256;
  using Mask = __m256i;
  static constexpr int kLanes = 8;
  AVX2_VECTOR_TARGET static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  AVX2_VECTOR_TARGET static Vec broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  AVX2_VECTOR_TARGET static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  AVX2_VECTOR_TARGET static void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  AVX2_VECTOR_TARGET static Mask mask(int n) { return first_lanes(n); }
  AVX2_VECTOR_TARGET static Vec load_masked(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  AVX2_VECTOR_TARGET static void store_masked(float* p, Mask m, Vec v) { _mm256_maskstore_ps(p, m, v); }
  AVX2_VECTOR_TARGET static Vec load_zeroing(const float* p, Mask m) {
    return _mm256_and_ps(_mm256_loadu_ps(p), _mm256_castsi256_ps(m));
  }
  AVX2_VECTOR_TARGET static void add_lane_sums(float* out, int n, Vec a, Vec b, Vec c, Vec d) {
    // Pairwise sums: [a01 a23 b01 b23 | a45 a67 b45 b67], then [a0123 b0123 c0123 d0123 | a4567 ...].
    const __m256 quads = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    add_to_first_lanes(out, n, _mm_add_ps(_mm256_castps256_ps128(quads), _mm256_extractf128_ps(quads, 1)));
  }
};
#undef AVX2_VECTOR_TARGET

}  // namespace classic_ops::cpu
