// The dense microkernels on AVX-512: 16 lanes a zmm register, tiles up to 6 pixels x 4
// vectors (24 accumulators of 32 registers; 4 weight vectors and a broadcast take 5 more).
#include <immintrin.h>

#define DENSE_MICROKERNEL_TARGET __attribute__((target("avx512f,avx2,fma")))

namespace classic_ops::cpu {
namespace {

struct Avx512Vectors {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  DENSE_MICROKERNEL_TARGET static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  DENSE_MICROKERNEL_TARGET static Vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  DENSE_MICROKERNEL_TARGET static Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  DENSE_MICROKERNEL_TARGET static void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  DENSE_MICROKERNEL_TARGET static Mask mask(int n) { return static_cast<Mask>((1u << n) - 1); }
  DENSE_MICROKERNEL_TARGET static Vec load_masked(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  DENSE_MICROKERNEL_TARGET static void store_masked(float* p, Mask m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
  // Halves added in place, by the zero-masking forms of the shuffles: GCC 12's plain ones,
  // its _mm512_reduce_add_ps and 256-bit extracts warn of an uninitialized variable in its
  // own header.
  DENSE_MICROKERNEL_TARGET static float sum(Vec v) {
    constexpr __mmask16 kAll = 0xFFFF;
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(kAll, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(kAll, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(kAll, v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_cvtss_f32(v);
  }
};

}  // namespace
}  // namespace classic_ops::cpu

#include "dense_microkernel_body.h"

namespace classic_ops::cpu {

static_assert(kAvx512Tile.lanes == Avx512Vectors::kLanes);
const MicrokernelSet kAvx512Microkernels =
    microkernel_set<Avx512Vectors, kAvx512Tile.pixels, kAvx512Tile.blocks>();

}  // namespace classic_ops::cpu
