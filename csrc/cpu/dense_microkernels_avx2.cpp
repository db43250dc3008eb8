// The dense microkernels on AVX2/FMA: 8 lanes a ymm register, tiles up to 6 pixels x 2
// vectors (12 accumulators of 16 registers).
#include <immintrin.h>

#include "avx2_vectors.h"

#define DENSE_MICROKERNEL_TARGET __attribute__((target("avx2,fma")))

namespace classic_ops::cpu {
namespace {

struct Avx2Vectors {
  using Vec = __m256;
  using Mask = __m256i;
  static constexpr int kLanes = 8;
  DENSE_MICROKERNEL_TARGET static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  DENSE_MICROKERNEL_TARGET static Vec broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  DENSE_MICROKERNEL_TARGET static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  DENSE_MICROKERNEL_TARGET static void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  DENSE_MICROKERNEL_TARGET static Mask mask(int n) { return first_lanes(n); }
  DENSE_MICROKERNEL_TARGET static Vec load_masked(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  DENSE_MICROKERNEL_TARGET static void store_masked(float* p, Mask m, Vec v) { _mm256_maskstore_ps(p, m, v); }
  DENSE_MICROKERNEL_TARGET static void add_lane_sums(float* out, int n, Vec a, Vec b, Vec c, Vec d) {
    // Pairwise sums: [a01 a23 b01 b23 | a45 a67 b45 b67], then [a0123 b0123 c0123 d0123 | a4567 ...].
    const __m256 quads = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    add_to_first_lanes(out, n, _mm_add_ps(_mm256_castps256_ps128(quads), _mm256_extractf128_ps(quads, 1)));
  }
};

}  // namespace
}  // namespace classic_ops::cpu

#include "dense_microkernel_body.h"

namespace classic_ops::cpu {

const MicrokernelSet kAvx2Microkernels = microkernel_set<Avx2Vectors, kAvx2Tile>();

}  // namespace classic_ops::cpu
