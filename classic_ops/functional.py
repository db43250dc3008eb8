"""Drop-in replacements for torch.nn.functional.conv2d / max_pool2d, plus the specialized
depthwise and 1x1 entry points. Thin: argument normalization only; the ops check the rest."""
import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair as _torch_pair

from ._dispatch import call as _call

ops = torch.ops.classic_ops

__all__ = ["conv2d", "depthwise_conv2d", "pointwise_conv2d", "max_pool2d"]


def _pair(value):
    """torch's _pair (a number twice, a sequence as a tuple), with lists, tuples and ints
    checked first: its Iterable check took 0.4 us, four times a call."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return _torch_pair(value)


def _batched(input, fn):
    """Runs fn on a 4-D batch; an unbatched (C, H, W) input is treated as a batch of one."""
    if input.dim() == 3:
        result = fn(input.unsqueeze(0))
        if isinstance(result, tuple):
            return tuple(t.squeeze(0) for t in result)
        return result.squeeze(0)
    return fn(input)


def _resolve_padding(input, weight, padding, stride, dilation):
    """Turns padding='same'/'valid' into numbers, as torch does. 'same' with an odd total
    padding puts the extra row/column at the bottom/right, so the input is padded there."""
    if not isinstance(padding, str):
        return input, _pair(padding)
    if padding == "valid":
        return input, (0, 0)
    if padding != "same":
        raise ValueError(f"padding must be 'same', 'valid' or numbers, got {padding!r}")
    if any(s != 1 for s in stride):
        raise ValueError("padding='same' is not supported for strided convolutions")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D, got {weight.dim()}-D")
    totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
    symmetric = tuple(t // 2 for t in totals)
    extra_h, extra_w = (t - 2 * s for t, s in zip(totals, symmetric))
    if extra_h or extra_w:
        input = F.pad(input, (0, extra_w, 0, extra_h))
    return input, symmetric


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, relu=False):
    """Like torch.nn.functional.conv2d; depthwise and 1x1 cases run the specialized kernels.
    relu=True gives relu(conv2d(...)), fused into the kernel where the backend can."""
    stride, dilation = _pair(stride), _pair(dilation)

    def run(x):
        x, pad = _resolve_padding(x, weight, padding, stride, dilation)
        return _call(ops.conv2d.default, x, weight, bias, stride, pad, dilation, groups, relu)

    return _batched(input, run)


def depthwise_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, relu=False):
    """Depthwise convolution (groups = input channels); weight is (C * multiplier, 1, kH, kW)."""
    stride, dilation = _pair(stride), _pair(dilation)

    def run(x):
        x, pad = _resolve_padding(x, weight, padding, stride, dilation)
        return _call(ops.depthwise_conv2d.default, x, weight, bias, stride, pad, dilation, relu)

    return _batched(input, run)


def pointwise_conv2d(input, weight, bias=None, stride=1, relu=False):
    """1x1 convolution; weight is (out_channels, in_channels, 1, 1)."""
    return _batched(input, lambda x: _call(ops.pointwise_conv2d.default, x, weight, bias, _pair(stride), relu))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Like torch.nn.functional.max_pool2d. Indices are computed only when returned or when
    a gradient will need them."""
    kernel_size = _pair(kernel_size)
    stride = kernel_size if stride is None or stride == [] else _pair(stride)
    args = (kernel_size, stride, _pair(padding), _pair(dilation), bool(ceil_mode))
    needs_indices = return_indices or (torch.is_grad_enabled() and input.requires_grad)
    if not needs_indices:
        return _batched(input, lambda x: _call(ops.max_pool2d.default, x, *args))
    output, indices = _batched(input, lambda x: _call(ops.max_pool2d_with_indices.default, x, *args))
    return (output, indices) if return_indices else output
