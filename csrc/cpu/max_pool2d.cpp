// Max-pooling over NCHW or channels_last tensors, indexed by strides. NCHW walks one plane
// per task; channels_last walks one output pixel per task with the channels innermost, so
// both read memory in order. NaN wins, as in PyTorch: a NaN in a window is the window's max.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "conv_taps.h"
#include "isa.h"
#include "kernels.h"
#include "parallel_grain.h"

namespace classic_ops::cpu {
namespace {

struct Strides4 {
  int64_t n, c, h, w;
  explicit Strides4(const at::Tensor& t)
      : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
  int64_t at(int64_t ni, int64_t ci, int64_t hi, int64_t wi) const {
    return ni * n + ci * c + hi * h + wi * w;
  }
};

template <typename scalar_t>
void forward_planes(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                    const PoolGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  int64_t* idx = indices.defined() ? indices.mutable_data_ptr<int64_t>() : nullptr;
  const Strides4 si(input), so(output);
  at::parallel_for(0, g.batch * g.channels, grain_for(g.in_h * g.in_w + g.out_h * g.out_w),
                   [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / g.channels, c = plane % g.channels;
      const scalar_t* in_p = in + si.at(n, c, 0, 0);
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          acc_t best;
          int64_t best_at;
          window_max(PoolWindow(g, oh, ow), g,
                     [&](int64_t ih, int64_t iw) { return static_cast<acc_t>(in_p[ih * si.h + iw * si.w]); },
                     best, best_at);
          const int64_t o = so.at(n, c, oh, ow);
          out[o] = static_cast<scalar_t>(best);
          if (idx) idx[o] = best_at;
        }
      }
    }
  });
}

template <typename scalar_t>
void forward_channels_last(const at::Tensor& input, const at::Tensor& output,
                           const at::Tensor& indices, const PoolGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  int64_t* idx = indices.defined() ? indices.mutable_data_ptr<int64_t>() : nullptr;
  const Strides4 si(input), so(output);
  const int64_t pixel_elements = (g.kernel_h * g.kernel_w + 1) * g.channels;
  at::parallel_for(0, g.batch * g.out_h * g.out_w, grain_for(pixel_elements), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> best(g.channels);
    std::vector<int64_t> best_at(g.channels);
    for (int64_t pixel = begin; pixel < end; ++pixel) {
      const int64_t n = pixel / (g.out_h * g.out_w);
      const int64_t oh = pixel / g.out_w % g.out_h, ow = pixel % g.out_w;
      const PoolWindow win(g, oh, ow);
      std::fill(best.begin(), best.end(), -std::numeric_limits<acc_t>::infinity());
      std::fill(best_at.begin(), best_at.end(), win.first_index(g));
      for (int64_t kh = win.rows.begin; kh < win.rows.end; ++kh) {
        const int64_t ih = win.row(g, kh);
        for (int64_t kw = win.cols.begin; kw < win.cols.end; ++kw) {
          const int64_t iw = win.col(g, kw);
          const scalar_t* in_px = in + si.at(n, 0, ih, iw);
          for (int64_t c = 0; c < g.channels; ++c) {
            const acc_t v = static_cast<acc_t>(in_px[c * si.c]);
            if (replaces_max(v, best[c])) {
              best[c] = v;
              best_at[c] = ih * g.in_w + iw;
            }
          }
        }
      }
      const int64_t o = so.at(n, 0, oh, ow);
      for (int64_t c = 0; c < g.channels; ++c) out[o + c * so.c] = static_cast<scalar_t>(best[c]);
      if (idx) {
        for (int64_t c = 0; c < g.channels; ++c) idx[o + c * so.c] = best_at[c];
      }
    }
  });
}

// Scatters grad_output to the argmax positions. Each task owns whole images (channels_last)
// or planes (NCHW) of grad_input, zeroes them and adds in memory order; an index outside
// its plane is skipped and reported once the task is done.
template <typename scalar_t>
void grad_input_impl(const at::Tensor& grad_output, const at::Tensor& indices,
                     const at::Tensor& grad_input, const PoolGeometry& g) {
  const scalar_t* gout = grad_output.const_data_ptr<scalar_t>();
  const int64_t* idx = indices.const_data_ptr<int64_t>();
  scalar_t* gin = grad_input.mutable_data_ptr<scalar_t>();
  const int64_t plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const bool channels_last = grad_input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const int64_t tasks = channels_last ? g.batch : g.batch * g.channels;
  const int64_t task_size = channels_last ? plane * g.channels : plane;
  std::atomic<bool> any_bad{false};
  std::atomic<int64_t> bad_index{0};
  at::parallel_for(0, tasks, grain_for(task_size), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      scalar_t* gin_task = gin + task * task_size;
      std::fill_n(gin_task, task_size, scalar_t(0));
      const int64_t* idx_task = idx + task * (task_size / plane) * out_plane;
      const scalar_t* gout_task = gout + task * (task_size / plane) * out_plane;
      if (channels_last) {  // (H*W, C) per image; channels innermost
        for (int64_t o = 0; o < out_plane; ++o) {
          for (int64_t c = 0; c < g.channels; ++c) {
            const int64_t i = idx_task[o * g.channels + c];
            if (static_cast<uint64_t>(i) >= static_cast<uint64_t>(plane)) {
              any_bad.store(true);
              bad_index.store(i);
              continue;
            }
            gin_task[i * g.channels + c] += gout_task[o * g.channels + c];
          }
        }
      } else {
        for (int64_t o = 0; o < out_plane; ++o) {
          const int64_t i = idx_task[o];
          if (static_cast<uint64_t>(i) >= static_cast<uint64_t>(plane)) {
            any_bad.store(true);
            bad_index.store(i);
            continue;
          }
          gin_task[i] += gout_task[o];
        }
      }
    }
  });
  TORCH_CHECK_VALUE(!any_bad.load(), "classic_ops.max_pool2d_grad_input: indices must lie in "
                    "[0, H*W) = [0, ", plane, "), found ", bad_index.load());
}

}  // namespace

void max_pool2d_forward(const at::Tensor& input, const at::Tensor& output,
                        const at::Tensor& indices, const PoolGeometry& g) {
  if (input.scalar_type() == at::kFloat && use_avx2()) {
    if (!indices.defined()) {
      max_pool2d_inference_avx2(input, output, g);
      return;
    }
    if (max_pool2d_with_indices_avx2(input, output, indices, g)) return;
  }
  const bool channels_last = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "classic_ops_max_pool2d_forward", [&] {
    if (channels_last) {
      forward_channels_last<scalar_t>(input, output, indices, g);
    } else {
      forward_planes<scalar_t>(input, output, indices, g);
    }
  });
}

void max_pool2d_grad_input(const at::Tensor& grad_output, const at::Tensor& indices,
                           const at::Tensor& grad_input, const PoolGeometry& g) {
  if (grad_output.scalar_type() == at::kFloat && use_avx2() &&
      max_pool2d_grad_input_avx2(grad_output, indices, grad_input, g)) {
    return;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "classic_ops_max_pool2d_grad_input",
                                  [&] { grad_input_impl<scalar_t>(grad_output, indices, grad_input, g); });
}

}  // namespace classic_ops::cpu
