// The machine's measured FMA throughput, the "peak" that benchmark figures are a fraction
// of: every thread runs independent chains of fused multiply-adds for a fixed time.
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <atomic>
#include <chrono>

#include "calibration.h"

namespace classic_ops::cpu {
namespace {

// Twelve independent chains cover the FMA latency (4 to 5 cycles) on both FMA ports.
constexpr int kChains = 12;

__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iterations) {
  __m256 acc[kChains];
#pragma GCC unroll 12
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  const __m256 scale = _mm256_set1_ps(0.999999f), shift = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], scale, shift);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  return _mm256_cvtss_f32(sum);
}

}  // namespace

double measure_fma_peak_gflops(double seconds) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0.0;
  constexpr int64_t kIterations = 1 << 20;
  constexpr double kFlopsPerIteration = kChains * 8 * 2;
  const int threads = at::get_num_threads();
  std::atomic<int64_t> rounds{0};
  std::atomic<float> sink{0.0f};
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      while (std::chrono::steady_clock::now() < deadline) {
        sink.store(fma_chains_avx2(kIterations), std::memory_order_relaxed);
        rounds.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return rounds.load() * kIterations * kFlopsPerIteration / elapsed * 1e-9;
}

}  // namespace classic_ops::cpu
