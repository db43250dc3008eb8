"""Max-pooling against torch.nn.functional.max_pool2d: values, indices, gradients."""
import random
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import classic_ops.functional as cf
from conftest import DEVICES, memory_format_of


@dataclass(frozen=True)
class PoolCase:
    batch: int
    channels: int
    height: int
    width: int
    kernel: tuple
    stride: object  # None means stride = kernel
    padding: tuple
    dilation: tuple
    ceil_mode: bool
    channels_last: bool
    noncontiguous: bool

    def __str__(self):
        return (f"n{self.batch}c{self.channels}_{self.height}x{self.width}_k{self.kernel}"
                f"s{self.stride}p{self.padding}d{self.dilation}{'_ceil' if self.ceil_mode else ''}"
                f"{'_cl' if self.channels_last else ''}{'_nc' if self.noncontiguous else ''}"
                ).replace(" ", "")


def _make_case(rng):
    kernel = rng.choice([(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (2, 3), (3, 2), (1, 3)])
    stride = rng.choice([None, (1, 1), (2, 2), (3, 3), (1, 2), (2, 1)])
    padding = tuple(rng.randint(0, k // 2) for k in kernel)
    dilation = (rng.randint(1, 3), rng.randint(1, 3)) if rng.random() < 0.3 else (1, 1)
    extent = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    height, width = (max(1, e - 2 * p) + rng.choice([0, 1, 2, 5, 8]) for e, p in zip(extent, padding))
    return PoolCase(batch=rng.choice([0, 1, 2, 3]), channels=rng.choice([1, 3, 4, 8]),
                    height=height, width=width, kernel=kernel, stride=stride, padding=padding,
                    dilation=dilation, ceil_mode=rng.random() < 0.5,
                    channels_last=rng.random() < 0.4, noncontiguous=rng.random() < 0.25)


def _every_window_sees_input(case):
    """Dilated windows can fall entirely into padding or between rows; PyTorch then returns
    -inf with an index outside the plane, which its own backward writes out of bounds.
    Those degenerate windows are left out of the grid (see test_window_without_input)."""
    from classic_ops._registrations import _pool_output_size

    stride = case.stride or case.kernel
    for size, k, s, p, d in zip((case.height, case.width), case.kernel, stride, case.padding,
                                case.dilation):
        out = _pool_output_size(size, k, s, p, d, case.ceil_mode)
        for o in range(out):
            if not any(0 <= o * s - p + t * d < size for t in range(k)):
                return False
    return True


GRID = [c for c in (_make_case(random.Random(7 * i)) for i in range(200))
        if _every_window_sees_input(c)][:160]


def _input(case, dtype, device):
    shape = (case.batch, case.channels, case.height, case.width)
    if case.noncontiguous:
        x = torch.randn(*shape[:-1], 2 * shape[-1], dtype=dtype, device=device)[..., 1::2]
    else:
        x = torch.randn(shape, dtype=dtype, device=device)
    return x.contiguous(memory_format=torch.channels_last) if case.channels_last else x


def _kwargs(case):
    return dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding,
                dilation=case.dilation, ceil_mode=case.ceil_mode)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", GRID, ids=str)
def test_max_pool2d_matches_native(case, dtype, device, cpu_path):
    torch.manual_seed(hash(str(case)) % 2**31)
    x = _input(case, dtype, device)
    ours_in, ref_in = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    out, idx = cf.max_pool2d(ours_in, **_kwargs(case), return_indices=True)
    ref, ref_idx = F.max_pool2d(ref_in, **_kwargs(case), return_indices=True)
    assert torch.equal(out, ref)
    assert torch.equal(idx, ref_idx)
    assert out.numel() == 0 or memory_format_of(out) == memory_format_of(ref)
    assert out.numel() == 0 or memory_format_of(idx) == memory_format_of(ref_idx)
    grad = torch.randn_like(ref)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(cf.max_pool2d(x, **_kwargs(case)), ref.detach())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_max_pool2d_reduced_precision_is_exact(dtype, device):
    x = torch.randn(2, 5, 13, 11, device=device).to(dtype)
    for cl in (False, True):
        xx = x.contiguous(memory_format=torch.channels_last) if cl else x
        out, idx = cf.max_pool2d(xx, 3, 2, 1, return_indices=True)
        ref, ref_idx = F.max_pool2d(xx, 3, 2, 1, return_indices=True)
        assert torch.equal(out, ref) and torch.equal(idx, ref_idx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("width", [41, 13])
def test_nan_and_infinity_follow_pytorch(device, channels_last, width, cpu_path):
    # Wide rows put NaN inside full vectors of the vectorized kernels, narrow rows (fewer
    # than eight outputs) inside their partial last vector.
    x = torch.randn(2, 3, 9, width, device=device)
    x[0, 0, 1, 1] = float("nan")
    x[0, 0, 4, 17:19] = float("nan")
    x[0, 1, 2:5, 2:5] = float("-inf")
    x[0, 1, 6, 20:40] = float("-inf")
    x[1, 2, 0, 0:3] = float("nan")
    x[1, 2, 1, 0] = float("inf")
    x[1, 1, 3:5, 9:30:3] = float("nan")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out, idx = cf.max_pool2d(x, 3, 2, 1, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert torch.equal(out.isnan(), ref.isnan())
    assert torch.equal(out.nan_to_num(), ref.nan_to_num())
    assert torch.equal(idx, ref_idx)
    inference = cf.max_pool2d(x, 3, 2, 1)  # the path that writes no indices
    assert torch.equal(inference.isnan(), ref.isnan())
    assert torch.equal(inference.nan_to_num(), ref.nan_to_num())


class _OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_inference_path_writes_no_indices():
    x = torch.randn(1, 2, 8, 8)
    with _OpRecorder() as rec:
        cf.max_pool2d(x, 2)
    assert "classic_ops.max_pool2d" in rec.ops and "classic_ops.max_pool2d_with_indices" not in rec.ops
    with _OpRecorder() as rec:
        cf.max_pool2d(x.requires_grad_(), 2)
    assert "classic_ops.max_pool2d_with_indices" in rec.ops


def test_indices_free_op_still_differentiates():
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    out = torch.ops.classic_ops.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
    (grad,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(F.max_pool2d(x, 3, 2, 1).sum(), x)
    assert torch.equal(grad, want)


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_input(device):
    x = torch.randn(3, 9, 8, device=device)
    out, idx = cf.max_pool2d(x, 2, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)


@pytest.mark.parametrize("channels_last", [False, True])
def test_window_without_input(channels_last):
    # Window 0 covers rows -1 and 1 of a 1-row input: no input element at all.
    x = torch.randn(1, 2, 1, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    args = dict(kernel_size=(2, 1), stride=1, padding=(1, 0), dilation=(2, 1))
    out, idx = cf.max_pool2d(x, **args, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, **args, return_indices=True)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)
    assert out.isneginf().all()
    # The indices point outside the plane; instead of writing there, backward refuses.
    with pytest.raises(ValueError, match="indices must lie in"):
        out.sum().backward()


_POOL_GEOMETRIES = [  # kernel, stride, padding: overlapping windows first
    ((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (1, 0)), ((2, 2), (2, 2), (0, 0)),
]


def _native_pool_backward_pair(x, geometry, make_indices=None, seed=0):
    """grad_input from our op and from PyTorch's CPU backward for the same grad_output (with
    some NaN and infinities) and indices (the forward's, or make_indices(forward's))."""
    kernel, stride, padding = geometry
    args = (list(kernel), list(stride), list(padding), [1, 1], False)
    out, indices = torch.ops.aten.max_pool2d_with_indices(x, *args)
    if make_indices is not None:
        indices = make_indices(indices)
    gen = torch.Generator().manual_seed(seed)
    grad = torch.randn(out.shape, generator=gen).to(x.dtype)
    # A NaN or infinite gradient reaches only the element its index names.
    grad.view(-1)[torch.randperm(grad.numel(), generator=gen)[:9]] = torch.tensor(
        [float("nan"), float("inf"), -float("inf")] * 3, dtype=x.dtype)
    grad = grad.contiguous(memory_format=memory_format_of(out))
    ours = torch.ops.classic_ops.max_pool2d_grad_input(grad, x, indices, *args)
    ref = torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *args, indices)
    return ours, ref, indices


def _assert_same_bits(ours, ref):
    assert ours.isnan().any()  # the poisoned gradients arrived
    assert torch.equal(ours.isnan(), ref.isnan())
    assert torch.equal(ours.nan_to_num(), ref.nan_to_num())
    assert torch.equal(ours.nan_to_num().signbit(), ref.nan_to_num().signbit())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("geometry", _POOL_GEOMETRIES, ids=str)
def test_backward_sums_as_pytorch_does_on_cpu(geometry, channels_last, dtype, cpu_path):
    # Few distinct values tie often, so overlapping windows pick the same element and up to
    # nine gradients sum into it: PyTorch adds them in output order, rounding each sum to
    # the dtype, and grad_input must equal its bit for bit. 19 channels leave a tail after
    # the vectors of eight.
    gen = torch.Generator().manual_seed(11)
    x = torch.randint(-2, 3, (2, 19, 11, 13), generator=gen).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, ref, indices = _native_pool_backward_pair(x, geometry)
    plane = x.shape[2] * x.shape[3]
    shared = torch.stack([torch.bincount(i.flatten(), minlength=plane) for i in indices.flatten(0, 1)])
    assert geometry[1][0] >= geometry[0][0] or shared.max() >= 3  # the sums this test is about
    assert memory_format_of(ours) == memory_format_of(ref)
    _assert_same_bits(ours, ref)


@pytest.mark.parametrize("channels_last", [False, True])
def test_backward_of_indices_outside_their_windows_scatters_as_pytorch_does(channels_last, cpu_path):
    # Indices not from a forward pass may name any element of the plane; PyTorch's CPU
    # backward adds each gradient there, and so must the channels_last gather's fallback.
    x = torch.randn(2, 19, 9, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(5)

    def anywhere(indices):
        return torch.randint(0, 90, indices.shape, generator=gen).contiguous(
            memory_format=memory_format_of(indices))

    ours, ref, _ = _native_pool_backward_pair(x, _POOL_GEOMETRIES[1], anywhere)
    _assert_same_bits(ours, ref)
