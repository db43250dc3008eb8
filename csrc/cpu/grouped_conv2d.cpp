// Direct convolution with groups, one output (or input) plane per task. Accumulates a
// whole plane in the accumulation type (float for half/bfloat16, double for double) and
// converts once at the end.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

#include "conv_taps.h"
#include "kernels.h"

namespace classic_ops::cpu {
namespace {

template <typename scalar_t>
void forward_impl(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                  const at::Tensor& output, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const int64_t taps = g.kernel_h * g.kernel_w;
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();

  at::parallel_for(0, g.batch * g.out_channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(out_plane);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.out_channels, k = task % g.out_channels;
      std::fill(acc.begin(), acc.end(), b ? static_cast<acc_t>(b[k]) : acc_t(0));
      for (int64_t c = 0; c < cpg; ++c) {
        const scalar_t* in_c = in + (n * g.in_channels + (k / kpg) * cpg + c) * in_plane;
        const scalar_t* w_kc = w + (k * cpg + c) * taps;
        for (int64_t r = 0; r < g.kernel_h; ++r) {
          for (int64_t s = 0; s < g.kernel_w; ++s) {
            const acc_t wv = static_cast<acc_t>(w_kc[r * g.kernel_w + s]);
            for_each_tap_row(g, r, s, [&](int64_t o, int64_t i, int64_t len) {
              axpy_strided(acc.data() + o, in_c + i, wv, len, g.stride_w);
            });
          }
        }
      }
      std::copy(acc.begin(), acc.end(), out + task * out_plane);
    }
  });
}

template <typename scalar_t>
void grad_input_impl(const at::Tensor& grad_output, const at::Tensor& weight,
                     const at::Tensor& grad_input, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* gout = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  scalar_t* gin = grad_input.mutable_data_ptr<scalar_t>();
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const int64_t taps = g.kernel_h * g.kernel_w;
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();

  at::parallel_for(0, g.batch * g.in_channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(in_plane);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.in_channels, ci = task % g.in_channels;
      const int64_t group = ci / cpg, c = ci % cpg;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t k = group * kpg; k < (group + 1) * kpg; ++k) {
        const scalar_t* gout_k = gout + (n * g.out_channels + k) * out_plane;
        const scalar_t* w_kc = w + (k * cpg + c) * taps;
        for (int64_t r = 0; r < g.kernel_h; ++r) {
          for (int64_t s = 0; s < g.kernel_w; ++s) {
            const acc_t wv = static_cast<acc_t>(w_kc[r * g.kernel_w + s]);
            for_each_tap_row(g, r, s, [&](int64_t o, int64_t i, int64_t len) {
              axpy_scatter(acc.data() + i, gout_k + o, wv, len, g.stride_w);
            });
          }
        }
      }
      std::copy(acc.begin(), acc.end(), gin + task * in_plane);
    }
  });
}

template <typename scalar_t>
void grad_weight_impl(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& grad_weight, const ConvGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* gout = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const int64_t cpg = g.in_channels_per_group(), kpg = g.out_channels_per_group();

  at::parallel_for(0, g.out_channels * cpg, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k = task / cpg, c = task % cpg;
      const int64_t ci = (k / kpg) * cpg + c;
      for (int64_t r = 0; r < g.kernel_h; ++r) {
        for (int64_t s = 0; s < g.kernel_w; ++s) {
          acc_t sum = 0;
          for (int64_t n = 0; n < g.batch; ++n) {
            const scalar_t* gout_k = gout + (n * g.out_channels + k) * out_plane;
            const scalar_t* in_c = in + (n * g.in_channels + ci) * in_plane;
            for_each_tap_row(g, r, s, [&](int64_t o, int64_t i, int64_t len) {
              sum += dot_strided<acc_t>(gout_k + o, in_c + i, len, g.stride_w);
            });
          }
          gw[task * g.kernel_h * g.kernel_w + r * g.kernel_w + s] = static_cast<scalar_t>(sum);
        }
      }
    }
  });
}

}  // namespace

void grouped_conv2d_forward(const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& output,
                            const ConvGeometry& g) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "classic_ops_grouped_conv2d_forward",
                                  [&] { forward_impl<scalar_t>(input, weight, bias, output, g); });
}

void grouped_conv2d_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                               const at::Tensor& grad_input, const ConvGeometry& g) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "classic_ops_grouped_conv2d_grad_input",
      [&] { grad_input_impl<scalar_t>(grad_output, weight, grad_input, g); });
}

void grouped_conv2d_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                const at::Tensor& grad_weight, const ConvGeometry& g) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "classic_ops_grouped_conv2d_grad_weight",
      [&] { grad_weight_impl<scalar_t>(grad_output, input, grad_weight, g); });
}

}  // namespace classic_ops::cpu
