// Which CPU code path runs: the AVX2/FMA kernels where the CPU has them, the portable
// reference kernels otherwise. Tests force the reference path to check both.
#pragma once

namespace classic_ops::cpu {

bool cpu_has_avx2_fma();

// True when the AVX2/FMA kernels may run: the CPU has them and they are not switched off.
bool use_avx2();

// Switches the AVX2/FMA kernels off (false) or back on where supported (true).
void set_avx2_enabled(bool enabled);

}  // namespace classic_ops::cpu
