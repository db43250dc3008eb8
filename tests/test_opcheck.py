"""torch.library.opcheck for every op: schema, fake kernel, autograd registration, and
AOT dispatch with dynamic shapes."""
import pytest
import torch

from conftest import DEVICES

ops = torch.ops.classic_ops


def _rand(*shape, device, grad=True, channels_last=False):
    t = torch.randn(*shape, device=device, dtype=torch.float64)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(grad)


def samples(device):
    r = lambda *s, **kw: _rand(*s, device=device, **kw)  # noqa: E731
    pool = ([3, 3], [2, 2], [1, 1], [1, 1], False)
    x_pool = r(2, 3, 9, 9)
    _, indices = ops.max_pool2d_with_indices(x_pool.detach(), *pool)
    x_pool_cl = r(2, 3, 9, 9, channels_last=True)
    _, indices_cl = ops.max_pool2d_with_indices(x_pool_cl.detach(), *pool)
    return {
        "conv2d": [
            (ops.conv2d, (r(2, 4, 9, 8), r(6, 2, 3, 3), r(6), [2, 1], [1, 0], [1, 2], 2)),
            (ops.conv2d, (r(1, 3, 7, 7, channels_last=True), r(5, 3, 3, 3), None, [1, 1], [1, 1], [1, 1], 1)),
            (ops.conv2d, (r(2, 8, 6, 7, channels_last=True), r(16, 8, 3, 3), r(16), [1, 1], [1, 1], [1, 1], 1,
                          True)),
        ],
        "depthwise_conv2d": [
            (ops.depthwise_conv2d, (r(2, 3, 8, 8), r(6, 1, 3, 5), r(6), [1, 2], [1, 2], [1, 1])),
            (ops.depthwise_conv2d, (r(2, 8, 8, 8), r(8, 1, 3, 3), r(8), [1, 1], [1, 1], [1, 1], True)),
        ],
        "pointwise_conv2d": [
            (ops.pointwise_conv2d, (r(2, 4, 7, 7), r(5, 4, 1, 1), r(5), [2, 2])),
            (ops.pointwise_conv2d, (r(2, 4, 7, 7), r(5, 4, 1, 1), r(5), [1, 1], True)),
        ],
        "conv2d_grad_input": [
            (ops.conv2d_grad_input, (r(2, 6, 5, 4), r(2, 4, 9, 8), r(6, 2, 3, 3), [2, 1], [1, 0], [1, 2], 2)),
        ],
        "conv2d_grad_weight": [
            (ops.conv2d_grad_weight, (r(2, 6, 5, 4), r(2, 4, 9, 8), r(6, 2, 3, 3), [2, 1], [1, 0], [1, 2], 2)),
        ],
        "max_pool2d": [(ops.max_pool2d, (r(2, 3, 9, 9), *pool)),
                       (ops.max_pool2d, (r(2, 3, 9, 9, channels_last=True), *pool))],
        "max_pool2d_with_indices": [(ops.max_pool2d_with_indices, (x_pool, *pool)),
                                    (ops.max_pool2d_with_indices, (x_pool_cl, *pool))],
        "max_pool2d_grad_input": [
            (ops.max_pool2d_grad_input, (r(2, 3, 5, 5), x_pool.detach(), indices, *pool)),
            (ops.max_pool2d_grad_input, (r(2, 3, 5, 5, channels_last=True), x_pool_cl.detach(), indices_cl, *pool)),
        ],
    }


OP_NAMES = ["conv2d", "depthwise_conv2d", "pointwise_conv2d", "conv2d_grad_input",
            "conv2d_grad_weight", "max_pool2d", "max_pool2d_with_indices", "max_pool2d_grad_input"]


def test_every_op_has_samples():
    declared = {name for name in dir(ops) if not name.startswith("_") and name not in ("name",)}
    assert set(OP_NAMES) == set(samples("cpu")) == declared & set(OP_NAMES)
    assert declared >= set(OP_NAMES)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OP_NAMES)
def test_opcheck(name, device):
    for op, args in samples(device)[name]:
        torch.library.opcheck(op, args)
