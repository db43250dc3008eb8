// The emulator's stand-in for c10/cuda/CUDAStream.h: launches run at once, on no stream.
#pragma once

#include <cuda_runtime_api.h>

namespace c10::cuda {
struct CUDAStream {
  cudaStream_t stream() const { return nullptr; }
};
inline CUDAStream getCurrentCUDAStream() { return {}; }
}  // namespace c10::cuda
