// The channels_last depthwise grad_weight's tap tiles on AVX2/FMA: up to 3 x 4 taps of 8
// channels.
#include "avx2_vectors.h"

#define MICROKERNEL_TARGET __attribute__((target("avx2,fma")))

#include "depthwise_microkernel_body.h"

namespace classic_ops::cpu {

const TapGradientSet kAvx2TapGradients = tap_gradient_set<Avx2Vectors, 3, 4>();

}  // namespace classic_ops::cpu
