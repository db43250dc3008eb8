// The dense microkernels on AVX-512: 16 lanes a zmm register, tiles up to 6 pixels x 4
// vectors (24 accumulators of 32 registers; 4 weight vectors and a broadcast take 5 more),
// dot-product tiles up to 6 x 4.
#include "avx512_vectors.h"

#define MICROKERNEL_TARGET __attribute__((target("avx512f,avx2,fma")))

#include "dense_microkernel_body.h"

namespace classic_ops::cpu {

const MicrokernelSet kAvx512Microkernels = microkernel_set<Avx512Vectors, kAvx512Tile>();

}  // namespace classic_ops::cpu
