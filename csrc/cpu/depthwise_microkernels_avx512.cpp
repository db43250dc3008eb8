// The channels_last depthwise microkernels on AVX-512: 16 channels a vector, gradient tiles
// up to 3 x 7 taps.
#include "avx512_vectors.h"

#define MICROKERNEL_TARGET __attribute__((target("avx512f,avx2,fma")))

#include "depthwise_microkernel_body.h"

namespace classic_ops::cpu {

const DepthwiseMicrokernelSet kAvx512DepthwiseMicrokernels = depthwise_microkernel_set<Avx512Vectors, 3, 7, 16>();

}  // namespace classic_ops::cpu
