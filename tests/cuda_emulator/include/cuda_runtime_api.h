// Host stand-ins for the CUDA runtime types and built-in functions the kernels use, for the
// emulator (see emulator.h). Only what the kernels need.
#pragma once

#include <cmath>
#include <cstdint>

#include "half_bits.h"

typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorLaunchFailure = 719;
constexpr cudaError_t cudaErrorNotSupported = 801;
typedef struct CUstream_st* cudaStream_t;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }

inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((uint64_t{a} * b) >> 32);
}
inline float __uint_as_float(unsigned bits) { return emulated::float_of_bits(bits); }
inline unsigned __float_as_uint(float f) { return emulated::bits_of(f); }
using std::isnan;

cudaError_t cudaGetLastError();
cudaError_t cudaGetDevice(int* device);
// The emulated device is an H200: compute capability 9.0, 132 multiprocessors (the split
// reductions depend on them).
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device);
cudaError_t emulated_set_max_dynamic_shared(const void* kernel, int bytes);
template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel kernel, cudaFuncAttribute, int bytes) {
  return emulated_set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), bytes);
}
