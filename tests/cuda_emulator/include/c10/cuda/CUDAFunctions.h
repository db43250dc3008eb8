// The emulator's stand-in for c10/cuda/CUDAFunctions.h: one device.
#pragma once

#include <c10/core/Device.h>

namespace c10::cuda {
inline c10::DeviceIndex device_count() { return 1; }
inline c10::DeviceIndex current_device() { return 0; }
}  // namespace c10::cuda
