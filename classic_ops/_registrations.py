"""Fake (meta) kernels and autograd formulas for every op in torch.ops.classic_ops.

The schemas and the real kernels live in C++ (csrc/ops.cpp and the backend folders).
"""
import torch
from torch._prims_common import suggest_memory_format
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

from ._dispatch import call

ops = torch.ops.classic_ops


# ---------------------------------------------------------------- shapes and formats

def _conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pool_output_size(size, kernel, stride, padding, dilation, ceil_mode):
    # Mirrors pool_output_size in csrc/checks.cpp (PyTorch's rule).
    span = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _conv_format(input, weight):
    """The memory format PyTorch's own convolution gives its output (on CUDA, float64 skips
    cuDNN and always answers in NCHW). Mirrors conv2d_output_format in csrc/checks.cpp."""
    cuda_double = input.device.type == "cuda" and input.dtype == torch.float64
    if not cuda_double and torch.channels_last in (suggest_memory_format(input), suggest_memory_format(weight)):
        return torch.channels_last
    return torch.contiguous_format


def _empty(shape, like, memory_format, dtype=None):
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device,
                       memory_format=memory_format)


def _conv_forward_fake(input, weight, stride, padding, dilation):
    n, _, h, w = input.shape
    k, _, r, s = weight.shape
    out_h = _conv_output_size(h, r, stride[0], padding[0], dilation[0])
    out_w = _conv_output_size(w, s, stride[1], padding[1], dilation[1])
    return _empty((n, k, out_h, out_w), input, _conv_format(input, weight))


@torch.library.register_fake("classic_ops::conv2d")
def _(input, weight, bias, stride, padding, dilation, groups, relu=False):
    return _conv_forward_fake(input, weight, stride, padding, dilation)


@torch.library.register_fake("classic_ops::depthwise_conv2d")
def _(input, weight, bias, stride, padding, dilation, relu=False):
    return _conv_forward_fake(input, weight, stride, padding, dilation)


@torch.library.register_fake("classic_ops::pointwise_conv2d")
def _(input, weight, bias, stride, relu=False):
    return _conv_forward_fake(input, weight, stride, (0, 0), (1, 1))


@torch.library.register_fake("classic_ops::conv2d_grad_input")
def _(grad_output, input, weight, stride, padding, dilation, groups):
    return _empty(input.shape, input, _conv_format(input, weight))


@torch.library.register_fake("classic_ops::conv2d_grad_weight")
def _(grad_output, input, weight, stride, padding, dilation, groups):
    return _empty(weight.shape, weight, _conv_format(input, weight))


def _pool_output_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    stride = stride or kernel_size
    n, c, h, w = input.shape
    out_h = _pool_output_size(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    out_w = _pool_output_size(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    return (n, c, out_h, out_w), suggest_memory_format(input)


@torch.library.register_fake("classic_ops::max_pool2d")
def _(input, kernel_size, stride, padding, dilation, ceil_mode):
    shape, fmt = _pool_output_fake(input, kernel_size, stride, padding, dilation, ceil_mode)
    return _empty(shape, input, fmt)


@torch.library.register_fake("classic_ops::max_pool2d_with_indices")
def _(input, kernel_size, stride, padding, dilation, ceil_mode):
    shape, fmt = _pool_output_fake(input, kernel_size, stride, padding, dilation, ceil_mode)
    return _empty(shape, input, fmt), _empty(shape, input, fmt, dtype=torch.int64)


@torch.library.register_fake("classic_ops::max_pool2d_grad_input")
def _(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    return _empty(input.shape, input, suggest_memory_format(input))


# ---------------------------------------------------------------- convolution autograd
# Every convolution op differentiates through the two general backward ops, which route
# to the same specialized kernels as the forward. Both backward ops are linear in each of
# their tensor arguments, so their own gradients are again convolutions: double backward
# works. With relu=True the incoming gradient is first masked where the output is not
# positive, as torch.relu's backward does.

_RELU_ARGUMENT = {"conv2d": 7, "depthwise_conv2d": 6, "pointwise_conv2d": 4}


def _conv_params(op_name, inputs):
    """(stride, padding, dilation, groups) of a forward convolution call."""
    if op_name == "conv2d":
        return tuple(inputs[3:7])
    if op_name == "depthwise_conv2d":
        return (*inputs[3:6], inputs[0].shape[1])
    return (inputs[3], (0, 0), (1, 1), 1)


def _register_conv_autograd(op_name):
    def setup_context(ctx, inputs, output):
        input, weight, bias = inputs[:3]
        relu = len(inputs) > _RELU_ARGUMENT[op_name] and inputs[_RELU_ARGUMENT[op_name]]
        ctx.save_for_backward(input, weight, output if relu else None)
        ctx.params = _conv_params(op_name, inputs)
        ctx.has_bias = bias is not None
        ctx.num_inputs = len(inputs)

    def backward(ctx, grad):
        input, weight, relu_output = ctx.saved_tensors
        if relu_output is not None:
            grad = grad * (relu_output > 0)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = call(ops.conv2d_grad_input.default, grad, input, weight, *ctx.params)
        if ctx.needs_input_grad[1]:
            grad_weight = call(ops.conv2d_grad_weight.default, grad, input, weight, *ctx.params)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return (grad_input, grad_weight, grad_bias) + (None,) * (ctx.num_inputs - 3)

    torch.library.register_autograd(f"classic_ops::{op_name}", backward,
                                    setup_context=setup_context)


for _name in ("conv2d", "depthwise_conv2d", "pointwise_conv2d"):
    _register_conv_autograd(_name)


def _save_backward_context(ctx, inputs, output):
    grad_output, input, weight = inputs[:3]
    ctx.save_for_backward(grad_output, input, weight)
    ctx.params = tuple(inputs[3:])


def _grad_input_backward(ctx, grad_grad_input):
    # grad_input = conv_transpose(grad_output, weight)
    grad_output, _, weight = ctx.saved_tensors
    d_grad_output = d_weight = None
    if ctx.needs_input_grad[0]:
        d_grad_output = call(ops.conv2d.default, grad_grad_input, weight, None, *ctx.params)
    if ctx.needs_input_grad[2]:
        d_weight = call(ops.conv2d_grad_weight.default, grad_output, grad_grad_input, weight, *ctx.params)
    return d_grad_output, None, d_weight, None, None, None, None


def _grad_weight_backward(ctx, grad_grad_weight):
    # grad_weight = correlate(grad_output, input)
    grad_output, input, _ = ctx.saved_tensors
    d_grad_output = d_input = None
    if ctx.needs_input_grad[0]:
        d_grad_output = call(ops.conv2d.default, input, grad_grad_weight, None, *ctx.params)
    if ctx.needs_input_grad[1]:
        d_input = call(ops.conv2d_grad_input.default, grad_output, input, grad_grad_weight, *ctx.params)
    return d_grad_output, d_input, None, None, None, None, None


torch.library.register_autograd("classic_ops::conv2d_grad_input", _grad_input_backward,
                                setup_context=_save_backward_context)
torch.library.register_autograd("classic_ops::conv2d_grad_weight", _grad_weight_backward,
                                setup_context=_save_backward_context)


# ---------------------------------------------------------------- max-pool autograd

def _pool_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.params = tuple(inputs[1:])


def _max_pool_backward(ctx, grad):
    # Reached only when the indices-free op is differentiated directly; the functional
    # API calls max_pool2d_with_indices whenever a gradient is needed.
    (input,) = ctx.saved_tensors
    _, indices = call(ops.max_pool2d_with_indices.default, input, *ctx.params)
    return (call(ops.max_pool2d_grad_input.default, grad, input, indices, *ctx.params),) + (None,) * 5


def _pool_with_indices_setup(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(inputs[0], output[1])
    ctx.params = tuple(inputs[1:])


def _max_pool_with_indices_backward(ctx, grad, _grad_indices):
    input, indices = ctx.saved_tensors
    return (call(ops.max_pool2d_grad_input.default, grad, input, indices, *ctx.params),) + (None,) * 5


def _pool_grad_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[2])


def _pool_grad_backward(ctx, grad_grad_input):
    # grad_input scatters grad_output to the argmax positions; its adjoint gathers them.
    (indices,) = ctx.saved_tensors
    gathered = grad_grad_input.flatten(2).gather(2, indices.flatten(2)).view(indices.shape)
    return (gathered,) + (None,) * 7


torch.library.register_autograd("classic_ops::max_pool2d", _max_pool_backward,
                                setup_context=_pool_setup)
torch.library.register_autograd("classic_ops::max_pool2d_with_indices",
                                _max_pool_with_indices_backward,
                                setup_context=_pool_with_indices_setup)
torch.library.register_autograd("classic_ops::max_pool2d_grad_input", _pool_grad_backward,
                                setup_context=_pool_grad_setup)


# ---------------------------------------------------------------- FLOP counting
# torch.utils.flop_counter.FlopCounterMode counts our convolutions as it counts aten's.

def _swap_first_dims(shape):
    return [shape[1], shape[0], *shape[2:]]


def _conv_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs):
    return conv_flop_count(input_shape, weight_shape, out_shape, transposed=False)


def _grad_input_flops(grad_output_shape, input_shape, weight_shape, *args, out_shape=None, **kwargs):
    return conv_flop_count(grad_output_shape, weight_shape, input_shape, transposed=True)


def _grad_weight_flops(grad_output_shape, input_shape, weight_shape, *args, out_shape=None, **kwargs):
    # The same correlation aten's formula counts for convolution_backward's weight gradient.
    return conv_flop_count(_swap_first_dims(input_shape), _swap_first_dims(grad_output_shape),
                           _swap_first_dims(weight_shape), transposed=False)


register_flop_formula([ops.conv2d, ops.depthwise_conv2d, ops.pointwise_conv2d])(_conv_flops)
register_flop_formula(ops.conv2d_grad_input)(_grad_input_flops)
register_flop_formula(ops.conv2d_grad_weight)(_grad_weight_flops)
