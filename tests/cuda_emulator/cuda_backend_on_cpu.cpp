// The emulator's stand-in for csrc/kernels.cpp in the op library it builds: every tensor,
// on the CPU as they all are, goes to the CUDA backend (csrc/cuda/backend.cpp), whose
// kernels run on the emulator. So the op layer, the backend's choices and its host code
// (layouts, padded channels, stride phases, split scratch) run as on a GPU.
#include "kernels.h"

namespace classic_ops {

const BackendKernels& kernels_for(const at::Tensor&) { return cuda_kernels(); }

}  // namespace classic_ops
