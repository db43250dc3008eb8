#pragma once

namespace classic_ops::cpu {

// Single-precision GFLOP/s of fused multiply-adds over at::get_num_threads() threads,
// measured for about `seconds`; 0 where the CPU has no AVX2/FMA.
double measure_fma_peak_gflops(double seconds);

}  // namespace classic_ops::cpu
