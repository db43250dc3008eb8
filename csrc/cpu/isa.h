// Which CPU code path runs: the AVX2/FMA kernels where the CPU has them, the portable
// reference kernels otherwise; and within the dense and depthwise convolutions, AVX-512
// microkernels where the CPU has AVX-512F. Tests switch the wider paths off to check each of them.
#pragma once

namespace classic_ops::cpu {

bool cpu_has_avx2_fma();
bool cpu_has_avx512();

// True when the AVX2/FMA kernels may run: the CPU has them and they are not switched off.
bool use_avx2();

// True when the AVX-512 microkernels may run: use_avx2(), the CPU has
// AVX-512F, and they are not switched off.
bool use_avx512();

// Switch the AVX2/FMA kernels (the AVX-512 ones with them), or the AVX-512 microkernels
// alone, off (false) or back on where supported (true).
void set_avx2_enabled(bool enabled);
void set_avx512_enabled(bool enabled);

}  // namespace classic_ops::cpu
