// The channels_last depthwise microkernels on AVX2/FMA: 8 channels a vector, gradient tiles
// up to 3 x 4 taps.
#include "avx2_vectors.h"

#define MICROKERNEL_TARGET __attribute__((target("avx2,fma")))

#include "depthwise_microkernel_body.h"

namespace classic_ops::cpu {

const DepthwiseMicrokernelSet kAvx2DepthwiseMicrokernels = depthwise_microkernel_set<Avx2Vectors, 3, 4, 8>();

}  // namespace classic_ops::cpu
