// The emulator's stand-in for c10/cuda/CUDAException.h: a failed launch raises with the
// emulator's account of what failed.
#pragma once

#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include "emulator.h"

#define C10_CUDA_CHECK(EXPR)                                                              \
  do {                                                                                    \
    const cudaError_t emulated_error = (EXPR);                                            \
    TORCH_CHECK(emulated_error == cudaSuccess, "emulated CUDA error ", emulated_error, ": ", \
                emulated::last_error());                                                  \
  } while (0)
