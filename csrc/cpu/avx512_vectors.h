// Avx512Vectors: 16 lanes a zmm register, the AVX-512 vector type of the microkernel
// bodies (avx2_vectors.h says what such a type provides).
#pragma once

#include <immintrin.h>

#include "avx2_vectors.h"

namespace classic_ops::cpu {

#define AVX512_VECTOR_TARGET __attribute__((target("avx512f,avx2,fma")))
struct Avx512Vectors {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  AVX512_VECTOR_TARGET static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  AVX512_VECTOR_TARGET static Vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  AVX512_VECTOR_TARGET static Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  AVX512_VECTOR_TARGET static void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  AVX512_VECTOR_TARGET static Mask mask(int n) { return static_cast<Mask>((1u << n) - 1); }
  AVX512_VECTOR_TARGET static Vec load_masked(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  AVX512_VECTOR_TARGET static void store_masked(float* p, Mask m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
  AVX512_VECTOR_TARGET static Vec load_zeroing(const float* p, Mask m) { return load_masked(p, m); }
  // The zero-masking forms of the shuffles and extracts: GCC 12's plain ones warn of an
  // uninitialized variable in its own header.
  template <int kOrder>
  AVX512_VECTOR_TARGET static Vec shuffle_quarters(Vec x, Vec y) {
    return _mm512_maskz_shuffle_f32x4(0xFFFF, x, y, kOrder);
  }
  // Quarters (four lanes) of x and of y added pairwise: [x0+x2, x1+x3, y0+y2, y1+y3].
  AVX512_VECTOR_TARGET static Vec halve_pair(Vec x, Vec y) {
    return _mm512_add_ps(shuffle_quarters<_MM_SHUFFLE(1, 0, 1, 0)>(x, y),
                         shuffle_quarters<_MM_SHUFFLE(3, 2, 3, 2)>(x, y));
  }
  AVX512_VECTOR_TARGET static void add_lane_sums(float* out, int n, Vec a, Vec b, Vec c, Vec d) {
    constexpr __mmask16 kAll = 0xFFFF;
    const Vec ab = halve_pair(a, b), cd = halve_pair(c, d);
    // Quarter k: four partial sums of the k-th of a, b, c, d; then each lane its quarter's sum.
    Vec quarters = _mm512_add_ps(shuffle_quarters<_MM_SHUFFLE(2, 0, 2, 0)>(ab, cd),
                                 shuffle_quarters<_MM_SHUFFLE(3, 1, 3, 1)>(ab, cd));
    quarters = _mm512_add_ps(quarters, _mm512_maskz_permute_ps(kAll, quarters, _MM_SHUFFLE(1, 0, 3, 2)));
    quarters = _mm512_add_ps(quarters, _mm512_maskz_permute_ps(kAll, quarters, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512i firsts = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const Vec sums = _mm512_maskz_permutexvar_ps(kAll, firsts, quarters);
    add_to_first_lanes(out, n, _mm512_maskz_extractf32x4_ps(0xF, sums, 0));
  }
};
#undef AVX512_VECTOR_TARGET

}  // namespace classic_ops::cpu
