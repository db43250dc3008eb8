// The machine's measured FMA throughput, the "peak" that benchmark figures are a fraction
// of: every thread runs independent chains of fused multiply-adds, of the widest vectors
// the CPU has (the microkernel set's own loop), for a fixed time.
#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>

#include "calibration.h"
#include "dense_microkernel.h"
#include "isa.h"

namespace classic_ops::cpu {

double measure_fma_peak_gflops(double seconds) {
  if (!cpu_has_avx2_fma()) return 0.0;
  // The widest FMA the CPU has: where 512-bit FMAs run at full width (AMD Zen 5, Intel's
  // server cores), twice the arithmetic of AVX2's.
  const MicrokernelSet& set = cpu_has_avx512() ? kAvx512Microkernels : kAvx2Microkernels;
  constexpr int64_t kIterations = 1 << 20;
  const int threads = at::get_num_threads();
  std::atomic<int64_t> rounds{0};
  std::atomic<float> sink{0.0f};
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      while (std::chrono::steady_clock::now() < deadline) {
        sink.store(set.fma_chains(kIterations), std::memory_order_relaxed);
        rounds.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(rounds.load()) * kIterations * set.flops_per_iteration() / elapsed * 1e-9;
}

}  // namespace classic_ops::cpu
