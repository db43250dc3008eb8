"""Every bad input gets a clear exception of the right type that names the argument. The
ops are called directly, so this is the shared C++ check that also guards C++ callers."""
import pytest
import torch

import classic_ops.functional as cf
from conftest import HAS_CUDA

ops = torch.ops.classic_ops


def conv(x=None, w=None, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    x = torch.randn(2, 4, 8, 8) if x is None else x
    w = torch.randn(6, 4 // groups, 3, 3) if w is None else w
    return ops.conv2d(x, w, b, stride, padding, dilation, groups)


def pool(x=None, kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1)):
    x = torch.randn(2, 3, 8, 8) if x is None else x
    return ops.max_pool2d(x, kernel, stride, padding, dilation, False)


BAD_INPUTS = {
    "conv_input_ndim": (lambda: conv(x=torch.randn(2, 4, 8, 8, 1)), ValueError, "input must be 4-D"),
    "conv_weight_ndim": (lambda: conv(w=torch.randn(6, 4, 3)), ValueError, "weight must be 4-D"),
    "conv_channel_mismatch": (lambda: conv(w=torch.randn(6, 3, 3, 3)), ValueError, "input channels"),
    "conv_groups_not_dividing_input": (
        lambda: conv(x=torch.randn(1, 5, 8, 8), w=torch.randn(6, 2, 3, 3), groups=2),
        ValueError, r"groups \(2\) must divide the input channels"),
    "conv_groups_not_dividing_output": (
        lambda: conv(w=torch.randn(5, 2, 3, 3), groups=2), ValueError,
        r"groups \(2\) must divide the weight's output channels"),
    "conv_groups_zero": (lambda: conv(groups=0, w=torch.randn(6, 4, 3, 3)), ValueError, "groups must be >= 1"),
    "conv_stride_zero": (lambda: conv(stride=(0, 1)), ValueError, "stride must be >= 1"),
    "conv_dilation_zero": (lambda: conv(dilation=(1, 0)), ValueError, "dilation must be >= 1"),
    "conv_negative_padding": (lambda: conv(padding=(-1, 0)), ValueError, "padding must be >= 0"),
    "conv_kernel_larger_than_padded_input": (
        lambda: conv(w=torch.randn(6, 4, 11, 3), padding=(1, 1)), ValueError, "larger than the padded input"),
    "conv_weight_dtype": (lambda: conv(w=torch.randn(6, 4, 3, 3, dtype=torch.float64)), TypeError,
                          "weight has dtype"),
    "conv_bias_dtype": (lambda: conv(b=torch.randn(6, dtype=torch.float64)), TypeError, "bias has dtype"),
    "conv_bias_shape": (lambda: conv(b=torch.randn(5)), ValueError, "bias must have shape"),
    "conv_integer_input": (lambda: conv(x=torch.ones(2, 4, 8, 8, dtype=torch.int32),
                                        w=torch.ones(6, 4, 3, 3, dtype=torch.int32)),
                           TypeError, "input must be a floating-point tensor"),
    "conv_bool_input": (lambda: conv(x=torch.ones(2, 4, 8, 8, dtype=torch.bool)), TypeError,
                        "input must be a floating-point tensor"),
    "conv_empty_kernel": (lambda: conv(w=torch.randn(6, 4, 0, 3)), ValueError, "weight must not be empty"),
    "conv_empty_spatial": (lambda: conv(x=torch.randn(2, 4, 0, 8), padding=(2, 2)), ValueError,
                           "non-empty spatial size"),
    "depthwise_weight_shape": (
        lambda: ops.depthwise_conv2d(torch.randn(1, 4, 8, 8), torch.randn(6, 1, 3, 3), None,
                                     [1, 1], [0, 0], [1, 1]),
        ValueError, "weight"),
    "pointwise_weight_shape": (
        lambda: ops.pointwise_conv2d(torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3), None, [1, 1]),
        ValueError, r"weight must have shape \(out_channels, in_channels, 1, 1\)"),
    "conv_grad_output_shape": (
        lambda: ops.conv2d_grad_input(torch.randn(2, 6, 5, 5), torch.randn(2, 4, 8, 8),
                                      torch.randn(6, 4, 3, 3), [1, 1], [0, 0], [1, 1], 1),
        ValueError, "grad_output must have shape"),
    "padding_string": (lambda: cf.conv2d(torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3), padding="full"),
                       ValueError, "padding must be 'same', 'valid'"),
    "same_padding_with_stride": (
        lambda: cf.conv2d(torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3), padding="same", stride=2),
        ValueError, "padding='same' is not supported for strided"),
    "pool_input_ndim": (lambda: pool(x=torch.randn(8, 8)), ValueError, "input must be 4-D"),
    "pool_kernel_zero": (lambda: pool(kernel=(0, 2)), ValueError, "kernel_size must be >= 1"),
    "pool_stride_zero": (lambda: pool(stride=(2, 0)), ValueError, "stride must be >= 1"),
    "pool_dilation_zero": (lambda: pool(dilation=(0, 1)), ValueError, "dilation must be >= 1"),
    "pool_negative_padding": (lambda: pool(padding=(-1, 0)), ValueError, "padding must be >= 0"),
    "pool_padding_over_half_kernel": (lambda: pool(kernel=(3, 3), padding=(2, 1)), ValueError,
                                      "must be at most half of kernel_size"),
    "pool_kernel_larger_than_input": (lambda: pool(x=torch.randn(1, 2, 3, 3), kernel=(5, 5)), ValueError,
                                      "does not fit the input"),
    "pool_integer_input": (lambda: pool(x=torch.ones(1, 2, 4, 4, dtype=torch.int64)), TypeError,
                           "input must be a floating-point tensor"),
    "pool_empty_channels": (lambda: pool(x=torch.randn(1, 0, 4, 4)), ValueError, "non-empty channel"),
    "pool_indices_out_of_range": (
        lambda: ops.max_pool2d_grad_input(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 4, 4),
                                          torch.full((1, 1, 2, 2), 99), [2, 2], [2, 2], [0, 0], [1, 1], False),
        ValueError, "indices must lie in"),
    "pool_indices_dtype": (
        lambda: ops.max_pool2d_grad_input(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 4, 4),
                                          torch.zeros((1, 1, 2, 2), dtype=torch.int32),
                                          [2, 2], [2, 2], [0, 0], [1, 1], False),
        TypeError, "indices must be int64"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_naming_the_argument(name):
    call, exception, message = BAD_INPUTS[name]
    with pytest.raises(exception, match=message):
        call()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and a CUDA build")
@pytest.mark.parametrize("which", ["weight", "bias"])
def test_device_mismatch_raises_naming_the_argument(which):
    x = torch.randn(1, 4, 8, 8, device="cuda")
    w = torch.randn(6, 4, 3, 3, device="cpu" if which == "weight" else "cuda")
    b = torch.randn(6, device="cpu") if which == "bias" else None
    with pytest.raises(ValueError, match=f"{which} is on cpu but input is on cuda"):
        ops.conv2d(x, w, b, [1, 1], [0, 0], [1, 1], 1)


def test_empty_batch_works_as_in_torch():
    x = torch.randn(0, 4, 8, 8, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    out = cf.conv2d(x, w, padding=1)
    assert out.shape == (0, 6, 8, 8)
    out.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w))
    assert cf.max_pool2d(torch.randn(0, 3, 8, 8), 2).shape == (0, 3, 4, 4)
