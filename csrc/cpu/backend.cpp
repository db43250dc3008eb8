#include "kernels.h"

namespace classic_ops {

const BackendKernels& cpu_kernels() {
  static const BackendKernels kernels = {
      /*direct=*/{cpu::grouped_conv2d_forward, cpu::grouped_conv2d_grad_input,
                  cpu::grouped_conv2d_grad_weight},
      /*depthwise=*/{cpu::grouped_conv2d_forward, cpu::grouped_conv2d_grad_input,
                     cpu::grouped_conv2d_grad_weight},
      /*pointwise=*/{cpu::pointwise_conv2d_forward, cpu::pointwise_conv2d_grad_input,
                     cpu::pointwise_conv2d_grad_weight},
      /*max_pool=*/{cpu::max_pool2d_forward, cpu::max_pool2d_grad_input},
  };
  return kernels;
}

}  // namespace classic_ops
