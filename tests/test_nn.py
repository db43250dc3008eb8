"""classic_ops.nn layers are drop-ins for torch.nn.Conv2d / MaxPool2d."""
import inspect
import sys

import pytest
import torch

from classic_ops import _C, functional as cf, nn as cnn


def test_constructor_signatures_match_torch():
    assert inspect.signature(cnn.Conv2d.__init__) == inspect.signature(torch.nn.Conv2d.__init__)
    assert inspect.signature(cnn.MaxPool2d.__init__) == inspect.signature(torch.nn.MaxPool2d.__init__)


CONV_CONFIGS = [
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, groups=4, padding="same"),
    dict(in_channels=4, out_channels=6, kernel_size=1, stride=2),
    dict(in_channels=4, out_channels=6, kernel_size=4, padding="same", dilation=2),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=(1, 2), padding_mode="replicate"),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, padding_mode="circular", groups=2),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding="valid", dtype=torch.float64),
]


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d_layer_loads_torch_state_and_matches(config):
    torch.manual_seed(0)
    reference = torch.nn.Conv2d(**config)
    ours = cnn.Conv2d(**config)
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 4, 11, 10, dtype=config.get("dtype", torch.float32), requires_grad=True)
    out, want = ours(x), reference(x)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.sum(), [x, *ours.parameters()])
    want_grads = torch.autograd.grad(want.sum(), [x, *reference.parameters()])
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert repr(ours).replace("Conv2d", "") == repr(reference).replace("Conv2d", "")


@pytest.mark.parametrize("config", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(3, 2), stride=1, dilation=2, ceil_mode=True),
                                    dict(kernel_size=3, stride=2, return_indices=True)],
                         ids=str)
def test_max_pool_layer_matches(config):
    x = torch.randn(2, 3, 13, 12, requires_grad=True)
    ours, reference = cnn.MaxPool2d(**config), torch.nn.MaxPool2d(**config)
    out, want = ours(x), reference(x)
    if config.get("return_indices"):
        assert torch.equal(out[1], want[1])
        out, want = out[0], want[0]
    assert torch.equal(out, want)
    assert torch.equal(torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0])


def test_layers_are_torch_layers():
    # Code that inspects a model for nn.Conv2d / nn.MaxPool2d still finds ours.
    assert isinstance(cnn.Conv2d(1, 1, 1), torch.nn.Conv2d)
    assert isinstance(cnn.MaxPool2d(2), torch.nn.MaxPool2d)


def test_functional_skips_autograd_only_when_no_gradient_can_be_asked_for():
    x = torch.randn(2, 3, 8, 8)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    tracked = cf.conv2d(x, w, padding=1)
    assert tracked.grad_fn is not None
    with torch.no_grad():
        untracked = cf.conv2d(x, w, padding=1)
    assert untracked.grad_fn is None and torch.equal(untracked, tracked.detach())
    detached = cf.conv2d(x, w.detach(), padding=1)
    assert detached.grad_fn is None and torch.equal(detached, untracked)
    pooled, indices = cf.max_pool2d(x.requires_grad_(), 2, return_indices=True)
    assert pooled.grad_fn is not None
    with torch.no_grad():
        assert torch.equal(cf.max_pool2d(x, 2, return_indices=True)[1], indices)


def _direct_call_cases():
    x = torch.randn(2, 4, 9, 9)
    w = torch.randn(6, 4, 3, 3)
    dw = torch.randn(8, 1, 3, 3)
    pw = torch.randn(6, 4, 1, 1)
    b = torch.randn(6)
    ops = torch.ops.classic_ops
    return [
        (ops.conv2d.default, (x, w, b, (2, 1), [1, 0], (1, 1), 1, True)),
        (ops.conv2d.default, (x, w, None, (1, 1), (1, 1), (1, 1), 1)),  # relu from the schema
        (ops.depthwise_conv2d.default, (x, dw, None, (1, 1), (1, 1), (1, 1), False)),
        (ops.pointwise_conv2d.default, (x, pw, b, (1, 1), False)),
        (ops.max_pool2d.default, (x, (3, 3), (2, 2), (1, 1), (1, 1), True)),
        (ops.max_pool2d_with_indices.default, (x, [2, 2], [2, 2], [0, 0], [1, 1], False)),
    ]


@pytest.mark.parametrize("case", range(6))
def test_direct_call_matches_the_op(case):
    torch.manual_seed(case)
    op, args = _direct_call_cases()[case]
    direct = _C.call_below_autograd(op, *args)
    assert direct is not NotImplemented
    expected = op(*args)
    for got, want in zip(direct if isinstance(direct, tuple) else (direct,),
                         expected if isinstance(expected, tuple) else (expected,)):
        assert torch.equal(got, want)


class _Subclass(torch.Tensor):
    pass


def test_direct_call_declines_what_it_does_not_convert():
    op = torch.ops.classic_ops.pointwise_conv2d.default
    x, w = torch.randn(1, 4, 5, 5), torch.randn(6, 4, 1, 1)
    declined = [
        (x.as_subclass(_Subclass), w, None, (1, 1)),  # a subclass may override torch functions
        (x, w, None, (1.0, 1)),                       # torch rejects or converts the float
        (x, w, None, 1),                              # torch broadcasts an int to int[2]
        (x, w, None, (1, 1, 1)),                      # the wrong length for int[2]
        (x, w, None, (True, 1)),                      # a bool is not an int here
        (x, w, None, (1, 1), 1),                      # an int is not a bool here
        (x, w, None, (1, 1), False, 0),               # one argument too many
        (x, w),                                       # bias and stride have no defaults
        (x, w.clone().requires_grad_(), None, (1, 1)),  # a gradient can be asked for
    ]
    for args in declined:
        assert _C.call_below_autograd(op, *args) is NotImplemented, args
    assert _C.call_below_autograd(torch.add, x, x) is NotImplemented  # not an OpOverload
    not_an_op = object()
    references = sys.getrefcount(not_an_op)
    assert _C.call_below_autograd(not_an_op, x) is NotImplemented
    assert sys.getrefcount(not_an_op) == references  # neither cached nor held
    with torch.no_grad():
        assert _C.call_below_autograd(op, x, w.clone().requires_grad_(), None, (1, 1)) is not NotImplemented


def test_direct_call_raises_what_the_op_raises():
    op = torch.ops.classic_ops.conv2d.default
    args = (torch.randn(1, 4, 5, 5), torch.randn(6, 3, 3, 3), None, (1, 1), (1, 1), (1, 1), 1)
    with pytest.raises(Exception) as via_op:
        op(*args)
    with pytest.raises(Exception) as direct:
        _C.call_below_autograd(op, *args)
    assert type(direct.value) is type(via_op.value) and str(direct.value) == str(via_op.value)
    assert "weight" in str(direct.value)


def test_functional_calls_reach_dispatch_modes():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(func)
            return func(*args, **(kwargs or {}))

    x = torch.randn(1, 4, 6, 6)
    with Recorder() as recorder:
        cf.conv2d(x, torch.randn(4, 1, 3, 3), groups=4, padding=1)
        cf.max_pool2d(x, 2)
    assert torch.ops.classic_ops.conv2d.default in recorder.seen
    assert torch.ops.classic_ops.max_pool2d.default in recorder.seen
