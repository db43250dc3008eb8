// The channels_last depthwise grad_weight's tap tiles on AVX-512: up to 3 x 7 taps of 16
// channels.
#include "avx512_vectors.h"

#define MICROKERNEL_TARGET __attribute__((target("avx512f,avx2,fma")))

#include "depthwise_microkernel_body.h"

namespace classic_ops::cpu {

const TapGradientSet kAvx512TapGradients = tap_gradient_set<Avx512Vectors, 3, 7>();

}  // namespace classic_ops::cpu
