#include "kernels.h"

#include <c10/util/Exception.h>

namespace classic_ops {

const BackendKernels& kernels_for(const at::Tensor& t) {
#ifdef CLASSIC_OPS_WITH_CUDA
  if (t.is_cuda()) return cuda_kernels();
#endif
  TORCH_CHECK_VALUE(t.is_cpu(), "classic_ops: no kernels for device ", t.device());
  return cpu_kernels();
}

}  // namespace classic_ops
