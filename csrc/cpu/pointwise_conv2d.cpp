// 1x1 convolution as one matrix product per image: (K x C) . (C x H*W). A stride > 1 first
// gathers the sampled pixels, so the product always runs over contiguous rows.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "conv_taps.h"
#include "kernels.h"

namespace classic_ops::cpu {
namespace {

// Output rows computed together: each input row is loaded once per block.
constexpr int64_t kRowBlock = 8;

// For each image n: out[n] (M x P) = a (M x depth) . b[n] (depth x P) + bias (M), in
// blocks of kRowBlock rows accumulated in acc_t.
template <typename scalar_t>
void batched_matmul(const scalar_t* a, const scalar_t* b, const scalar_t* bias, scalar_t* out,
                    int64_t batch, int64_t rows, int64_t depth, int64_t cols) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(kRowBlock * cols);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, row0 = (task % blocks) * kRowBlock;
      const int64_t block_rows = std::min(kRowBlock, rows - row0);
      for (int64_t m = 0; m < block_rows; ++m) {
        std::fill_n(acc.data() + m * cols, cols, bias ? static_cast<acc_t>(bias[row0 + m]) : acc_t(0));
      }
      const scalar_t* b_n = b + n * depth * cols;
      for (int64_t d = 0; d < depth; ++d) {
        const scalar_t* b_row = b_n + d * cols;
        for (int64_t m = 0; m < block_rows; ++m) {
          const acc_t coeff = static_cast<acc_t>(a[(row0 + m) * depth + d]);
          acc_t* acc_row = acc.data() + m * cols;
          for (int64_t p = 0; p < cols; ++p) acc_row[p] += coeff * static_cast<acc_t>(b_row[p]);
        }
      }
      std::copy_n(acc.data(), block_rows * cols, out + (n * rows + row0) * cols);
    }
  });
}

bool is_strided(const ConvGeometry& g) { return g.stride_h != 1 || g.stride_w != 1; }

// The pixels a strided 1x1 convolution reads, as a view of the full-resolution tensor.
at::Tensor sampled(const at::Tensor& full, const ConvGeometry& g) {
  return full.slice(2, 0, c10::nullopt, g.stride_h).slice(3, 0, c10::nullopt, g.stride_w);
}

}  // namespace

void pointwise_conv2d_forward(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& bias, const at::Tensor& output,
                              const ConvGeometry& g) {
  const at::Tensor pixels = is_strided(g) ? sampled(input, g).contiguous() : input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "classic_ops_pointwise_conv2d_forward", [&] {
    batched_matmul<scalar_t>(weight.const_data_ptr<scalar_t>(), pixels.const_data_ptr<scalar_t>(),
                             bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
                             output.mutable_data_ptr<scalar_t>(), g.batch, g.out_channels,
                             g.in_channels, g.out_h * g.out_w);
  });
}

void pointwise_conv2d_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 const at::Tensor& grad_input, const ConvGeometry& g) {
  const at::Tensor weight_t = weight.reshape({g.out_channels, g.in_channels}).t().contiguous();
  const at::Tensor grad_pixels =
      is_strided(g) ? at::empty({g.batch, g.in_channels, g.out_h, g.out_w}, grad_input.options())
                    : grad_input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "classic_ops_pointwise_conv2d_grad_input", [&] {
    batched_matmul<scalar_t>(weight_t.const_data_ptr<scalar_t>(),
                             grad_output.const_data_ptr<scalar_t>(), nullptr,
                             grad_pixels.mutable_data_ptr<scalar_t>(), g.batch, g.in_channels,
                             g.out_channels, g.out_h * g.out_w);
  });
  if (is_strided(g)) {
    grad_input.zero_();
    sampled(grad_input, g).copy_(grad_pixels);
  }
}

void pointwise_conv2d_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                  const at::Tensor& grad_weight, const ConvGeometry& g) {
  const at::Tensor pixels = is_strided(g) ? sampled(input, g).contiguous() : input;
  const int64_t plane = g.out_h * g.out_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "classic_ops_pointwise_conv2d_grad_weight", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gout = grad_output.const_data_ptr<scalar_t>();
    const scalar_t* x = pixels.const_data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, g.out_channels * g.in_channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t k = task / g.in_channels, c = task % g.in_channels;
        acc_t sum = 0;
        for (int64_t n = 0; n < g.batch; ++n) {
          sum += dot_strided<acc_t>(gout + (n * g.out_channels + k) * plane,
                                    x + (n * g.in_channels + c) * plane, plane, /*stride=*/1);
        }
        gw[task] = static_cast<scalar_t>(sum);
      }
    });
  });
}

}  // namespace classic_ops::cpu
