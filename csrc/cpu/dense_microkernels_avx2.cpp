// The dense microkernels on AVX2/FMA: 8 lanes a ymm register, tiles up to 6 pixels x 2
// vectors (12 accumulators of 16 registers).
#include "avx2_vectors.h"

#define MICROKERNEL_TARGET __attribute__((target("avx2,fma")))

#include "dense_microkernel_body.h"

namespace classic_ops::cpu {

const MicrokernelSet kAvx2Microkernels = microkernel_set<Avx2Vectors, kAvx2Tile>();

}  // namespace classic_ops::cpu
