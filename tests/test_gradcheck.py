"""torch.autograd.gradcheck and gradgradcheck in float64 for every op's autograd formula."""
import pytest
import torch

import classic_ops.functional as cf
from conftest import DEVICES


def _leaf(*shape, device):
    return torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)


CONV_CASES = {
    "dense_strided_dilated": (lambda x, w, b: cf.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(2, 1)),
                              (2, 3, 9, 8), (4, 3, 3, 3)),
    "grouped_nonsquare": (lambda x, w, b: cf.conv2d(x, w, b, padding=1, groups=2), (1, 4, 7, 7), (6, 2, 3, 5)),
    "same_even_kernel": (lambda x, w, b: cf.conv2d(x, w, b, padding="same", dilation=1), (2, 2, 6, 7), (3, 2, 2, 4)),
    "depthwise_multiplier2": (lambda x, w, b: cf.depthwise_conv2d(x, w, b, stride=2, padding=1), (2, 3, 9, 9),
                              (6, 1, 3, 3)),
    "pointwise_strided": (lambda x, w, b: cf.pointwise_conv2d(x, w, b, stride=2), (2, 5, 7, 6), (3, 5, 1, 1)),
    "dense_relu": (lambda x, w, b: cf.conv2d(x, w, b, padding=1, relu=True), (2, 3, 6, 5), (4, 3, 3, 3)),
    "depthwise_relu": (lambda x, w, b: cf.depthwise_conv2d(x, w, b, padding=1, relu=True), (1, 3, 6, 6),
                       (3, 1, 3, 3)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_conv_gradcheck(name, device):
    fn, x_shape, w_shape = CONV_CASES[name]
    args = (_leaf(*x_shape, device=device), _leaf(*w_shape, device=device),
            _leaf(w_shape[0], device=device))
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(2, 3), stride=1, dilation=2, ceil_mode=True)],
                         ids=["3x3s2p1", "2x3s1d2ceil"])
def test_max_pool_gradcheck(kwargs, channels_last, device):
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    fn = lambda x: cf.max_pool2d(x, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
