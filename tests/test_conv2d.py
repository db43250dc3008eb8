"""Convolutions against torch.nn.functional.conv2d, forward and backward, over a grid."""
import io
import itertools
import random
import sys
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

import classic_ops.functional as cf
from classic_ops import _C
from classic_ops import nn as cnn
from conftest import DEVICES, forward_and_grads, memory_format_of, num_threads, tolerances

KERNELS = [(1, 1), (2, 2), (3, 3), (5, 5), (7, 7), (11, 11), (1, 3), (3, 1), (2, 5), (5, 3)]
PADDINGS = [0, 1, 2, 3, (1, 2), "same", "valid"]


@dataclass(frozen=True)
class ConvCase:
    batch: int
    in_channels: int
    groups: int
    multiplier: int  # output channels per group / input channels per group, for depthwise
    out_channels: int
    height: int
    width: int
    kernel: tuple
    stride: tuple
    padding: object
    dilation: tuple
    bias: bool
    channels_last: bool
    noncontiguous: bool

    def __str__(self):
        return (f"n{self.batch}c{self.in_channels}k{self.out_channels}g{self.groups}"
                f"_{self.height}x{self.width}_r{self.kernel}s{self.stride}p{self.padding}"
                f"d{self.dilation}{'_b' if self.bias else ''}{'_cl' if self.channels_last else ''}"
                f"{'_nc' if self.noncontiguous else ''}").replace(" ", "")


def _make_case(rng, in_choices=(2, 3, 4, 6), out_choices=(1, 3, 5, 8)):
    kernel = rng.choice(KERNELS)
    dilation = (rng.randint(1, 3), rng.randint(1, 3)) if rng.random() < 0.4 else (1, 1)
    stride = (rng.randint(1, 4), rng.randint(1, 4)) if rng.random() < 0.5 else (1, 1)
    padding = rng.choice(PADDINGS)
    if padding == "same":
        stride = (1, 1)
    style = rng.choice(["dense", "dense", "grouped", "depthwise", "depthwise2"])
    in_channels = rng.choice(in_choices) if style != "grouped" else rng.choice([c for c in in_choices if c % 2 == 0])
    groups = {"dense": 1, "grouped": 2}.get(style, in_channels)
    multiplier = 2 if style == "depthwise2" else 1
    out_channels = {"dense": rng.choice(out_choices), "grouped": 2 * rng.choice([1, 2, 3])}.get(
        style, in_channels * multiplier)
    pad = padding if isinstance(padding, int) else (0, 0) if isinstance(padding, str) else padding
    pad = (pad, pad) if isinstance(pad, int) else pad
    extent = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    min_size = [max(1, e - 2 * p) for e, p in zip(extent, pad)]
    height, width = (m + rng.choice([0, 1, 2, 4, 6]) for m in min_size)
    height, width = (s | 1 if rng.random() < 0.7 else s for s in (height, width))  # mostly odd
    return ConvCase(batch=rng.choice([0, 1, 2, 3, 4]) if rng.random() < 0.2 else rng.choice([1, 2]),
                    in_channels=in_channels, groups=groups, multiplier=multiplier,
                    out_channels=out_channels, height=height, width=width, kernel=kernel,
                    stride=stride, padding=padding, dilation=dilation, bias=rng.random() < 0.6,
                    channels_last=rng.random() < 0.35, noncontiguous=rng.random() < 0.25)


def _grid(count=240, seed=2026, **channels):
    rng = random.Random(seed)
    return [_make_case(rng, **channels) for _ in range(count)]


GRID = _grid()
# A lane block (8) of channels or more, on either side: the CPU kernels with channels as
# lanes (the small grid's dense convolutions take the planar ones), and the layouts
# between them (one output channel, ragged lane blocks).
WIDE_GRID = _grid(60, seed=7, in_choices=(8, 9, 16, 17), out_choices=(1, 8, 9, 20))


def test_grid_covers_every_axis_of_the_issue():
    seen = lambda attr: {getattr(c, attr) for c in GRID}  # noqa: E731
    assert set(KERNELS) <= seen("kernel")
    assert {1, 2, 3, 4} <= {s for c in GRID for s in c.stride}
    assert set(map(str, PADDINGS)) <= {str(c.padding) for c in GRID}
    assert {1, 2, 3} <= {d for c in GRID for d in c.dilation}
    assert {0, 1, 2, 3, 4} <= seen("batch")
    assert {True, False} <= seen("bias") & seen("channels_last") & seen("noncontiguous")
    styles = {(c.groups == 1, c.groups == c.in_channels, c.multiplier) for c in GRID}
    assert {(True, False, 1), (False, False, 1), (False, True, 1), (False, True, 2)} <= styles
    assert any(c.height % 2 and c.width % 2 for c in GRID)
    assert len(GRID) >= 200


def _tensor(shape, dtype, device, channels_last=False, noncontiguous=False):
    if noncontiguous:  # every other column of a wider tensor
        wide = torch.randn(*shape[:-1], 2 * shape[-1], dtype=dtype, device=device)
        t = wide[..., ::2]
    else:
        t = torch.randn(shape, dtype=dtype, device=device)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def _inputs(case, dtype, device):
    x = _tensor((case.batch, case.in_channels, case.height, case.width), dtype, device,
                case.channels_last, case.noncontiguous)
    w = _tensor((case.out_channels, case.in_channels // case.groups, *case.kernel), dtype, device,
                case.channels_last and case.batch % 2 == 0)
    b = torch.randn(case.out_channels, dtype=dtype, device=device) if case.bias else None
    return x, w, b


def check_against_native(case, dtype, device, ours, weight_scale=1.0):
    torch.manual_seed(hash(str(case)) % 2**31)
    x, w, b = _inputs(case, dtype, device)
    w = w * weight_scale  # keeps w's memory format
    kwargs = dict(stride=case.stride, padding=case.padding, dilation=case.dilation)
    ref_out, ref_grads = forward_and_grads(
        lambda x, w, b: F.conv2d(x, w, b, groups=case.groups, **kwargs), (x, w, b), 7)
    out, grads = forward_and_grads(lambda x, w, b: ours(x, w, b, kwargs), (x, w, b), 7)
    tol = tolerances(dtype)
    torch.testing.assert_close(out, ref_out, **tol)
    assert memory_format_of(out) == memory_format_of(ref_out) or out.numel() == 0
    for name, got, want in zip(["input", "weight", "bias"], grads, ref_grads):
        torch.testing.assert_close(got, want, **tol, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", GRID, ids=str)
def test_conv2d_matches_native(case, dtype, device, cpu_path):
    check_against_native(case, dtype, device,
                         lambda x, w, b, kw: cf.conv2d(x, w, b, groups=case.groups, **kw))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", WIDE_GRID, ids=str)
def test_conv2d_with_many_channels_matches_native(case, device, cpu_path):
    check_against_native(case, torch.float32, device,
                         lambda x, w, b, kw: cf.conv2d(x, w, b, groups=case.groups, **kw))


# Channel counts around the CPU register tiles' lane groups (16 channels of AVX2 tiles, 64 of
# AVX-512 ones: several groups, the last one partial and its last vector ragged), on either
# side (grad_input runs the same kernel with the channels swapped), and output rows of one
# tile or several of unequal widths; 3 input channels over NCHW at stride 1 take the planar
# kernel, its tiles of positions (32 or 64) across rows or, 70 wide, along each row.
TILE_EDGES = [ConvCase(2, c, 1, 1, k, 7, width, (3, 3), (stride, stride), 1, (1, 1), True, cl, False)
              for c, k in [(8, 100), (100, 8), (17, 65), (65, 17), (24, 130), (3, 100)]
              for width, stride in [(5, 1), (13, 1), (25, 2), (70, 1)] for cl in [False, True]]


@pytest.mark.parametrize("case", TILE_EDGES, ids=str)
def test_dense_register_tile_edges_match_native(case, cpu_path):
    check_against_native(case, torch.float32, "cpu", lambda x, w, b, kw: cf.conv2d(x, w, b, **kw))


# Weight panels past what one reduction chunk sweeps (768 KB: more than 341 input channels
# at 3x3 in AVX-512 tiles, 1365 in AVX2 ones): the CPU channels_last kernel sums chunk by
# chunk over bands of rows (40 rows here, in two bands of 28 and 12 on AVX-512). The weight
# is scaled as layers initialize it, so that float32 sums of thousands of terms stay
# within the tolerances.
CHUNKED_REDUCTIONS = [ConvCase(2, c, 1, 1, k, 20, 9, (3, 3), (stride, stride), 1, (1, 1), True, cl, False)
                      for c, k in [(400, 100), (1400, 20)] for stride in [1, 2] for cl in [False, True]]


@pytest.mark.parametrize("case", CHUNKED_REDUCTIONS, ids=str)
def test_dense_reduction_in_chunks_matches_native(case, cpu_path):
    check_against_native(case, torch.float32, "cpu", lambda x, w, b, kw: cf.conv2d(x, w, b, **kw),
                         weight_scale=(9 * case.in_channels) ** -0.5)


DEPTHWISE = [c for c in GRID if c.groups == c.in_channels][:60]
POINTWISE = [ConvCase(n, c, 1, 1, k, h, w, (1, 1), (s, s), 0, (1, 1), bias, cl, nc)
             for (n, c, k, h, w, s, bias, cl, nc) in [
                 (2, 3, 5, 7, 9, 1, True, False, False), (1, 8, 4, 6, 5, 2, False, True, False),
                 (3, 4, 6, 9, 9, 3, True, False, True), (0, 4, 2, 5, 5, 1, True, False, False),
                 (2, 16, 8, 5, 7, 1, False, True, True), (4, 5, 9, 11, 3, 2, True, True, False),
                 # Planes of 1024 pixels and more: the CPU grad_weight by dot products, tiles
                 # of rows and columns partial, the last vector of a plane ragged; with 70
                 # channels, in two chunks of positions.
                 (2, 7, 10, 33, 35, 1, True, False, False), (1, 5, 4, 66, 70, 2, False, False, False),
                 (1, 40, 30, 33, 35, 1, False, False, False),
                 # Several chunks of positions in the CPU planar kernel, the last one partial.
                 (1, 256, 40, 23, 23, 1, True, False, False)]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", DEPTHWISE, ids=str)
def test_depthwise_conv2d_matches_native(case, dtype, device):
    check_against_native(case, dtype, device,
                         lambda x, w, b, kw: cf.depthwise_conv2d(x, w, b, **kw))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", POINTWISE, ids=str)
def test_pointwise_conv2d_matches_native(case, dtype, device, cpu_path):
    check_against_native(case, dtype, device,
                         lambda x, w, b, kw: cf.pointwise_conv2d(x, w, b, kw["stride"]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", GRID[:24], ids=str)
def test_conv2d_reduced_precision_accumulates_in_float(case, dtype, device):
    # Reference: native float32 on the same rounded inputs, rounded once at the end.
    torch.manual_seed(0)
    x, w, b = (t.to(dtype) if t is not None else None for t in _inputs(case, torch.float32, device))
    kwargs = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    want = F.conv2d(x.float(), w.float(), b.float() if b is not None else None, **kwargs).to(dtype)
    got = cf.conv2d(x, w, b, **kwargs)
    assert got.dtype == dtype
    torch.testing.assert_close(got, want, **tolerances(dtype))


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_input(device):
    x = torch.randn(3, 9, 8, device=device)
    w = torch.randn(4, 3, 3, 3, device=device)
    torch.testing.assert_close(cf.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))


def test_routes_depthwise_and_pointwise_calls_to_their_kernels():
    # Same numbers whichever entry point: conv2d routes to the specialized ops' kernels.
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    dw = torch.randn(12, 1, 3, 3, dtype=torch.float64)
    pw = torch.randn(5, 6, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(cf.conv2d(x, dw, groups=6, padding=1),
                               cf.depthwise_conv2d(x, dw, padding=1), rtol=0, atol=0)
    torch.testing.assert_close(cf.conv2d(x, pw, stride=2), cf.pointwise_conv2d(x, pw, stride=2),
                               rtol=0, atol=0)


def test_kernels_are_exact_on_integer_valued_inputs():
    # Small integers make every product and partial sum exact in float64, so ours and
    # native must agree bit for bit, whatever the summation order.
    for groups, kernel, stride in itertools.product([1, 2, 4], [1, 3, 5], [1, 2]):
        x = torch.randint(-4, 5, (2, 4, 11, 10), dtype=torch.float64)
        w = torch.randint(-3, 4, (8, 4 // groups, kernel, kernel), dtype=torch.float64)
        assert torch.equal(cf.conv2d(x, w, stride=stride, padding=kernel // 2, groups=groups),
                           F.conv2d(x, w, stride=stride, padding=kernel // 2, groups=groups))


def _dense_conv_both_paths(x, w):
    _C.set_avx2_enabled(False)
    reference = cf.conv2d(x, w, padding=1)
    _C.set_avx2_enabled(True)
    return cf.conv2d(x, w, padding=1), reference


@pytest.mark.skipif(not _C.cpu_has_avx2_fma(), reason="CPU without AVX2/FMA")
def test_avx2_path_is_taken_and_agrees():
    # The two paths sum in different orders: equal within tolerance, not bit for bit.
    x, w = torch.randn(2, 64, 13, 13), torch.randn(32, 64, 3, 3)
    fast, reference = _dense_conv_both_paths(x, w)
    assert not torch.equal(fast, reference)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mutate", ["in_place", "through_data", "load_state_dict"])
@pytest.mark.parametrize("layer", ["dense", "dense_channels_last_model", "depthwise_channels_last"])
def test_cached_weight_packing_sees_every_weight_update(mutate, layer):
    # Both kernels keep their repacked weights in the cache: the dense one (for rows of 12
    # pixels or more) as lane blocks, the channels_last depthwise one as taps by channel. A
    # channels_last model's weights are channels_last: their contiguous copies are cached too.
    out_channels, groups = (16, 16) if layer.startswith("depthwise") else (24, 1)
    conv = torch.nn.Conv2d(16, out_channels, 3, padding=1, groups=groups)
    ours = cnn.Conv2d(16, out_channels, 3, padding=1, groups=groups)
    x = torch.randn(2, 16, 9, 16)
    if layer.endswith("channels_last"):
        x = x.contiguous(memory_format=torch.channels_last)
    if layer == "dense_channels_last_model":
        ours = ours.to(memory_format=torch.channels_last)
        assert not ours.weight.is_contiguous()
    with torch.no_grad():
        ours(x)  # packs and caches the weight
        if mutate == "in_place":
            ours.weight.mul_(-2.0)
        elif mutate == "through_data":
            ours.weight.data.copy_(torch.randn_like(ours.weight))  # bypasses the version counter
        else:
            ours.load_state_dict(conv.state_dict())
        conv.load_state_dict(ours.state_dict())
        torch.testing.assert_close(ours(x), conv(x), rtol=1e-4, atol=1e-4)


def test_weight_cache_follows_every_optimizer_step():
    # Each step changes the weight, for more steps than the cache holds entries (rows of 16
    # pixels: the kernel that packs).
    conv = cnn.Conv2d(8, 8, 3, padding=1)
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.1)
    x = torch.randn(2, 8, 9, 16)
    for _ in range(80):
        optimizer.zero_grad()
        conv(x).square().mean().backward()
        optimizer.step()
        with torch.no_grad():
            reference = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
            torch.testing.assert_close(conv(x), reference, rtol=1e-4, atol=1e-4)


RELU_CALLS = {
    "conv2d": (lambda x, w, b, relu: cf.conv2d(x, w, b, padding=1, relu=relu), 1),
    "conv2d_strided": (lambda x, w, b, relu: cf.conv2d(x, w, b, stride=2, padding=1, relu=relu), 1),
    "depthwise": (lambda x, w, b, relu: cf.depthwise_conv2d(x, w, b, padding=1, relu=relu), "depthwise"),
    "pointwise": (lambda x, w, b, relu: cf.pointwise_conv2d(x, w, b, relu=relu), "pointwise"),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("name", sorted(RELU_CALLS))
def test_relu_option_is_relu_of_the_convolution(name, channels_last, dtype, device):
    # Channels a multiple of 8 so that on CUDA the tensor-core kernels (ReLU fused in their
    # epilogue) take the half and channels_last cases.
    if dtype == torch.float16 and device == "cpu":
        pytest.skip("float16 convolutions are slow reference loops on the CPU")
    fn, kind = RELU_CALLS[name]
    torch.manual_seed(3)
    x = torch.randn(2, 16, 9, 10, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w_shape = {1: (24, 16, 3, 3), "depthwise": (16, 1, 3, 3), "pointwise": (24, 16, 1, 1)}[kind]
    w = torch.randn(w_shape, device=device, dtype=dtype) / 6
    b = torch.randn(w_shape[0], device=device, dtype=dtype)
    fused, fused_grads = forward_and_grads(lambda *t: fn(*t, True), (x, w, b), 5)
    want, want_grads = forward_and_grads(lambda *t: torch.relu(fn(*t, False)), (x, w, b), 5)
    assert (want == 0).any() and (want > 0).any()
    torch.testing.assert_close(fused, want, **tolerances(dtype))
    for got, expected in zip(fused_grads, want_grads):
        torch.testing.assert_close(got, expected, **tolerances(dtype))


@pytest.mark.parametrize("kernel", [3, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_infinities_follow_native(stride, kernel, cpu_path):
    # The NCHW kernels read whole vectors past a row's end and mask the lanes outside it: an
    # infinity under those lanes (the input's last columns, the next grad_output row's
    # first) must not meet a masked zero and turn a sum into NaN. (No padding: the AVX2
    # kernels multiply explicit padding zeros, which native kernels skip, so an infinity
    # next to padding gives NaN in grad_weight where native's is finite.)
    torch.manual_seed(stride)
    x = torch.randn(1, 8, 6 + kernel * stride, 14)
    x[0, 1, 3, 13] = float("inf")
    x = x.requires_grad_()
    w = torch.randn(8, 1, kernel, kernel).requires_grad_()
    got = cf.depthwise_conv2d(x, w, stride=stride)
    want = F.conv2d(x, w, stride=stride, groups=8)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    grad = torch.randn_like(want)
    grad[0, 2, 2, 0] = float("inf")
    for g, e in zip(torch.autograd.grad(got, (x, w), grad), torch.autograd.grad(want, (x, w), grad)):
        assert g.isinf().any()
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4, equal_nan=True)


@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("width", [5, 14, 15, 31, 56, 57])
def test_depthwise_stride2_rows_of_every_width_match_native(width, padding):
    # NCHW stride 2 splits each input row into even and odd columns by whole vectors, masked
    # where they cross the row's ends, by masked loads on rows where the vectors would leave
    # the plane: widths below, at and above one and several vectors, odd and even, reach each.
    torch.manual_seed(width * 3 + padding)
    x = torch.randn(2, 3, 9, width, dtype=torch.float64).float().requires_grad_()
    w = torch.randn(3, 1, 3, 3).requires_grad_()
    got = cf.depthwise_conv2d(x, w, stride=2, padding=padding)
    want = F.conv2d(x, w, stride=2, padding=padding, groups=3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, (x, w), grad)
    want_grads = torch.autograd.grad(want, (x, w), grad)
    for g, e in zip(got_grads, want_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride, dilation, multiplier", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (3, 1, 1)])
def test_depthwise_planes_of_several_bands_match_native(stride, dilation, multiplier, cpu_path):
    # The NCHW kernel pads and splits the input rows of a band of output rows at a time, as
    # many as fit in 16 KB (32 of these 112-column rows at stride 1, 13 at stride 2): these
    # planes take several bands, the last one short, with padding rows at both ends.
    torch.manual_seed(stride * 10 + dilation)
    x = torch.randn(1, 2, 150, 112)
    w = torch.randn(2 * multiplier, 1, 3, 3)
    b = torch.randn(2 * multiplier)
    kwargs = dict(stride=stride, padding=dilation, dilation=dilation)
    got = cf.depthwise_conv2d(x, w, b, **kwargs)
    want = F.conv2d(x.double(), w.double(), b.double(), groups=2, **kwargs).float()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("window, stride, dilation, size, multiplier, channels", [
    ((7, 7), 1, 1, (30, 37), 1, 12),  # NCHW: groups of four output rows, the last overlapping; a 5-column tail
    ((7, 7), 1, 1, (150, 112), 2, 3),  # several bands of output rows
    ((7, 7), 2, 1, (29, 16), 1, 12),  # stride 2: 3 x 2 rows before and after those all output rows read
    ((6, 6), 2, 1, (20, 33), 1, 12),  # only the paired rows, none read by all
    ((3, 5), 1, 1, (11, 17), 1, 12),  # the same at stride 1
    ((7, 1), 1, 1, (12, 9), 1, 12),
    ((31, 31), 1, 1, (40, 41), 1, 12),
    ((5, 5), 2, 1, (21, 21), 1, 12),  # three output rows a pass: too few kernel rows for four at stride 2
    ((2, 5), 1, 1, (10, 19), 1, 12),  # three at stride 1
    ((1, 7), 1, 1, (9, 20), 1, 12),  # two
    ((7, 7), 1, 2, (26, 26), 1, 12),  # one output row at a time: dilation down the columns
    ((1, 5), 2, 1, (9, 20), 1, 12),  # and one kernel row at stride 2
    ((7, 7), 1, 1, (9, 24), 1, 12),  # three output rows: fewer than a group
    ((7, 7), 1, 1, (10, 13), 1, 256),  # channels_last: pixels of 1 KB, copied a cache line apart
    ((9, 9), 3, 1, (25, 30), 1, 20),  # channels_last: the general pixels kernel
])
def test_depthwise_windows_beyond_3x3_match_native(window, stride, dilation, size, multiplier, channels,
                                                    channels_last, cpu_path):
    # Windows other than 3x3 run, over NCHW, two to four output rows at a time where the
    # rows allow it (each input vector loaded once for the output rows that read it) and one
    # row at a time otherwise; over channels_last, from zero-padded copies of the input
    # rows, 8 or 16 pixels at a time (rows of 5 or 7 taps at stride 1 or 2 sliding, their
    # weights in registers), a row's last pixels in one call, channels past whole blocks
    # masked. The sizes give rows of every length modulo eight.
    torch.manual_seed(window[0] * 100 + window[1] + stride)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, channels, *size).contiguous(memory_format=memory_format).requires_grad_()
    w = torch.randn(channels * multiplier, 1, *window).requires_grad_()
    b = torch.randn(channels * multiplier)
    padding = tuple(dilation * (k - 1) // 2 for k in window)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    got = cf.depthwise_conv2d(x, w, b, **kwargs)
    want = F.conv2d(x.double(), w.double(), b.double(), groups=channels, **kwargs)
    torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(got)
    for g, e in zip(torch.autograd.grad(got, (x, w), grad), torch.autograd.grad(want, (x, w), grad.double())):
        # grad_weight sums up to 33600 products here: float32's error grows with the sums.
        torch.testing.assert_close(g, e.float(), rtol=1e-4, atol=1e-4 * max(1.0, e.abs().max().item() / 100))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel, channels", [(3, 16), (3, 20), (3, 24), (5, 24)])
def test_depthwise_full_channel_blocks_match_native(kernel, channels, stride, channels_last, cpu_path):
    # The grid's depthwise cases have fewer than 8 channels; these reach the kernels' whole
    # blocks of 8 (AVX2) and 16 (AVX-512) channels and their compiled-in 3-wide windows,
    # borders included: over channels_last, 20 channels sweep 16 + 4 per pixel on AVX-512,
    # 24 sweep 16 + 8.
    torch.manual_seed(kernel * channels + stride)
    x = torch.randn(2, channels, 13, 21)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, 1, kernel, kernel)
    b = torch.randn(channels)
    got = cf.depthwise_conv2d(x, w, b, stride=stride, padding=kernel // 2)
    want = F.conv2d(x, w, b, stride=stride, padding=kernel // 2, groups=channels)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# (channels, out_channels, groups, kernel, stride, padding, dilation): the CPU's
# channels_last backward passes over channels_last tensors. Depthwise grad_weight in blocks
# of a vector's channels (8 on AVX2, 16 on AVX-512; whole and partial) with up to 3 kernel
# rows x 4 taps (AVX2) or 7 (AVX-512) a pass (5x5 and 7x7 take several); depthwise grad_input by the forward row sweeps at stride 1 and, where
# strided or where the padding exceeds the window (no forward form), by gathering (stride 4
# over a 3-wide window leaves positions no output reads); dense and 1x1 grad_input by the
# channels_last forward kernel phase by phase (fewer than 8 channels, dilation, strided
# 1x1 with phases no tap reaches), by the planar kernel through NCHW copies (rows of 10
# under a filter of over 2^20 weights), or by the NCHW reference kernel where no forward
# form exists; 1x1 grad_weight over a plane of 1024 pixels or more.
CHANNELS_LAST_BACKWARD = [
    (24, 24, 24, (3, 3), 1, 1, 1), (13, 13, 13, (3, 3), 2, 1, 1), (16, 16, 16, (7, 7), 2, 3, 1),
    (9, 9, 9, (5, 5), 1, 2, 1), (16, 16, 16, (3, 3), 1, 0, 2), (8, 8, 8, (3, 3), 1, 3, 1),
    (16, 16, 16, (1, 7), (1, 2), (0, 3), 1), (24, 24, 24, (3, 3), 4, 1, 1),
    (12, 20, 1, (3, 3), 2, 1, 1), (16, 8, 1, (3, 3), 1, 1, 2), (3, 16, 1, (3, 3), 2, 1, 1),
    (9, 9, 1, (5, 5), 1, 2, 1), (8, 12, 1, (3, 3), 1, 5, 2), (16, 24, 1, (1, 1), 1, 0, 1),
    (17, 9, 1, (1, 1), 3, 0, 1), (384, 384, 1, (3, 3), 1, 1, 1),
    (32, 48, 1, (3, 3), 2, 1, 1), (48, 16, 1, (3, 5), (2, 1), (1, 2), 1),
]


# A channels_last weight: the CPU dense grad_input reads it in place where its input
# channels fill whole vectors (16, 384), else packs it.
@pytest.mark.parametrize("weight_format", [torch.contiguous_format, torch.channels_last], ids=["w_nchw", "w_cl"])
@pytest.mark.parametrize("size", [(11, 10), (33, 40)], ids=["small", "1320_pixels"])
@pytest.mark.parametrize("case", CHANNELS_LAST_BACKWARD, ids=str)
def test_channels_last_backward_matches_native_and_stays_channels_last(case, size, weight_format, cpu_path):
    channels, out_channels, groups, kernel, stride, padding, dilation = case
    torch.manual_seed(channels * out_channels + size[0])
    cl = torch.channels_last
    x = torch.randn(2, channels, *size).contiguous(memory_format=cl)
    w = torch.randn(out_channels, channels // groups, *kernel).contiguous(memory_format=weight_format)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    grad_out = torch.randn(F.conv2d(x, w, **kwargs).shape).contiguous(memory_format=cl)
    # A float64 reference: the 384-channel case sums 3456 products per grad_input element.
    _, want = forward_and_grads(lambda x, w: F.conv2d(x, w, **kwargs), (x.double(), w.double()),
                                grad_out.double())
    _, got = forward_and_grads(lambda x, w: cf.conv2d(x, w, **kwargs), (x, w), grad_out)
    for name, g, e in zip(["grad_input", "grad_weight"], got, want):
        torch.testing.assert_close(g, e.float(), rtol=1e-4, atol=1e-3, msg=lambda m: f"{name}: {m}")
    assert memory_format_of(got[0]) == cl


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "cl"])
@pytest.mark.parametrize("channels", [5, 16, 21])
@pytest.mark.parametrize("height, width", [(7, 9), (8, 8), (1, 2), (2, 1), (12, 13), (5, 34), (6, 35)])
def test_depthwise_3x3_stride2_grad_input_matches_native(height, width, channels, memory_format, cpu_path):
    # MobileNet's downsampling window (3x3, stride 2, padding 1): the CPU computes each pair
    # of grad_input columns from the one or two grad_output rows that reach its row (over
    # NCHW eight pairs a vector, interleaved); odd and even heights and widths (an odd last
    # row or column has no output below or to its right), rows of one, two and three
    # vectors of outputs, the last one partial or whole, and whole and partial blocks of
    # eight channels.
    torch.manual_seed(channels * height + width)
    x = torch.randn(3, channels, height, width).contiguous(memory_format=memory_format)
    w = torch.randn(channels, 1, 3, 3)
    kwargs = dict(stride=2, padding=1, groups=channels)
    grad_out = torch.randn(F.conv2d(x, w, **kwargs).shape).contiguous(memory_format=memory_format)
    _, want = forward_and_grads(lambda x, w: F.conv2d(x, w, **kwargs), (x.double(), w.double()),
                                grad_out.double())
    _, got = forward_and_grads(lambda x, w: cf.conv2d(x, w, **kwargs), (x, w), grad_out)
    torch.testing.assert_close(got[0], want[0].float(), rtol=1e-5, atol=1e-5)
    assert memory_format_of(got[0]) == memory_format_of(want[0])


@pytest.mark.parametrize("channels", [20, 256])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), ((2, 1), (2, 1)), ((1, 2), 1)])
@pytest.mark.parametrize("padding", [0, 1, 4])
@pytest.mark.parametrize("height, width", [(5, 70), (7, 37), (13, 9)])
def test_depthwise_channels_last_row_sweeps_match_native(height, width, padding, stride, dilation, channels):
    # channels_last 3x3 windows with stride 1 or 2 along the row sweep each block of eight
    # channels along segments of 32 input columns, carrying partial sums from output to
    # output and skipping columns outside the input: rows wider than one segment, windows
    # with one, two or three rows inside the input, padding wider than the window (outputs
    # that see no column), rows dilated, and 20 channels (a partial block) reach each part.
    # With 256 the sweeps read a copy of each task's input rows, pixels spread apart; two
    # images and up to 13 rows give tasks that cross from one image to the next.
    torch.manual_seed(height * width + padding)
    x = torch.randn(2, channels, height, width, dtype=torch.float64)
    w = torch.randn(channels, 1, 3, 3, dtype=torch.float64)
    b = torch.randn(channels, dtype=torch.float64)
    want = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=channels)
    got = cf.depthwise_conv2d(x.float().contiguous(memory_format=torch.channels_last), w.float(), b.float(),
                              stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_channels_last_sweeps_skip_padding_like_native(stride):
    # The sweeps skip columns and rows outside the input instead of multiplying padding
    # zeros: an infinite weight on a tap that reaches into the padding gives NaN only
    # where native's float32 kernel gives it (nowhere).
    torch.manual_seed(stride)
    x = torch.randn(1, 16, 9, 40).contiguous(memory_format=torch.channels_last)
    x[0, 5, 0, 7] = float("inf")
    w = torch.randn(16, 1, 3, 3)
    w[3, 0, 0, 0] = float("inf")
    got = cf.depthwise_conv2d(x, w, stride=stride, padding=1)
    want = F.conv2d(x, w, stride=stride, padding=1, groups=16)
    assert got.isinf().any()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_channels_last_sweeps_with_aliased_rows_match_native(stride):
    # With 256 channels (1 KB pixels), the input at the output's address modulo 1 KB made
    # every load wait on a store (4K aliasing); the sweeps read a copy of the input rows
    # instead, which must not depend on where the input lies. The input is moved to where
    # the next output should land, modulo 1 KB, until three calls have run aliased (checked).
    # That is where the last output landed, or, where the allocator alternates between two
    # blocks (the reference's own buffers come and go in between), the one before: each is
    # aimed at in turn; even outputs landing anywhere alias once in 16 calls on average.
    torch.manual_seed(stride)
    channels, height, width = 256, 4, 37
    w = torch.randn(channels, 1, 3, 3)
    b = torch.randn(channels)
    storage = torch.empty(channels * height * width + 256)
    offset, aliased, landed = 0, 0, []
    for attempt in range(300):
        x = storage[offset:offset + channels * height * width].view(1, height, width, channels).permute(0, 3, 1, 2)
        x.copy_(torch.randn(1, channels, height, width))
        got = cf.depthwise_conv2d(x, w, b, stride=stride, padding=1)
        torch.testing.assert_close(got, F.conv2d(x, w, b, stride=stride, padding=1, groups=channels),
                                   rtol=1e-5, atol=1e-5)
        aliased += (x.data_ptr() - got.data_ptr()) % 1024 == 0
        landed.append(got.data_ptr())
        target = landed[-2] if attempt % 2 and len(landed) > 1 else landed[-1]
        offset = (target - storage.data_ptr()) % 1024 // 4
        del got
        if aliased == 3:
            break
    assert aliased == 3


def _our_grads(grad, x, w, args):
    """(grad_input, grad_weight) of classic_ops for args = (stride, padding, dilation, groups)."""
    return (torch.ops.classic_ops.conv2d_grad_input(grad, x, w, *args),
            torch.ops.classic_ops.conv2d_grad_weight(grad, x, w, *args))


def _native_grads(grad, x, w, args):
    """The same by ATen's convolution_backward."""
    return torch.ops.aten.convolution_backward(grad, x, w, None, *args[:3], False, [0, 0], args[3],
                                               [True, True, False])[:2]


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, 2, 1), (3, 2, 0), (5, 3, 2), (2, 2, 0),
                                                     (1, 2, 0), ((3, 5), (2, 3), (1, 2))])
@pytest.mark.parametrize("width", [23, 26, 40])
def test_many_channels_and_long_rows_match_native(kernel, stride, padding, width):
    # The NCHW forward of rows of 12 pixels or more, or strided, runs the channels_last
    # kernel, its input transposed, its rows written out from a buffer. A stride phase of
    # grad_input runs through the channels_last kernel with every stride-th tap of the
    # flipped filter, written into grad_input's strided view. grad_weight's
    # sums of 8 taps and 8 input channels or more are unpacked by 8x8 transposes. 11 output
    # and 13 input channels leave partial lane blocks and overlapping transposes.
    torch.manual_seed(width * 7 + sum(_pair(stride)))
    x = torch.randn(2, 13, 19, width, dtype=torch.float64).float()
    w = torch.randn(11, 13, *((kernel, kernel) if isinstance(kernel, int) else kernel))
    b = torch.randn(11)
    want_out = F.conv2d(x, w, b, stride=stride, padding=padding)
    grad = torch.randn_like(want_out)
    args = (list(_pair(stride)), list(_pair(padding)), [1, 1], 1)
    torch.testing.assert_close(torch.ops.classic_ops.conv2d(x, w, b, *args), want_out, rtol=1e-4, atol=1e-4)
    for name, g, e in zip(["input", "weight"], _our_grads(grad, x, w, args), _native_grads(grad, x, w, args)):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("input_format, weight_format", [
    (torch.contiguous_format, torch.contiguous_format), (torch.contiguous_format, torch.channels_last),
    (torch.channels_last, torch.channels_last), (torch.channels_last, torch.contiguous_format)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_large_filters_over_short_rows_match_native(dilation, input_format, weight_format):
    # Stride 1, rows under 12 pixels and a filter of 4 MB or more (1M floats) run the planar
    # kernel (pixels of a plane as lanes), forward and grad_input, over NCHW or through NCHW
    # copies of channels_last tensors, reading the weight where it lies in either format;
    # smaller filters the channels_last one.
    torch.manual_seed(dilation)
    x = torch.randn(2, 256, 9, 7, dtype=torch.float64)
    w = torch.randn(520, 256, 3, 3, dtype=torch.float64)
    b = torch.randn(520, dtype=torch.float64)
    want = F.conv2d(x, w, b, padding=dilation, dilation=dilation)
    x32 = x.float().contiguous(memory_format=input_format)
    w32 = w.float().contiguous(memory_format=weight_format)
    got = cf.conv2d(x32, w32, b.float(), padding=dilation, dilation=dilation)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-3)
    grad = torch.randn_like(want)
    args = ([1, 1], [dilation] * 2, [dilation] * 2, 1)
    got_grads = _our_grads(grad.float().contiguous(memory_format=input_format), x32, w32, args)
    for name, g, e in zip(["input", "weight"], got_grads, _native_grads(grad, x, w, args)):
        torch.testing.assert_close(g.double(), e, rtol=1e-4, atol=1e-3, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("batch, channels, out_channels, height, width, kernel, stride, padding, dilation", [
    (2, 3, 7, 9, 37, 3, 1, 1, 1),  # rows of 16 + 16 + 5 pixels: a masked one-block tile
    (1, 2, 6, 12, 33, 5, 1, 0, 2),  # 16 + 9: a masked two-block tile
    (1, 3, 64, 190, 241, 3, 1, 1, 1),  # rows in two chunks, six output channels a tile and four
    (1, 5, 9, 20, 16, (3, 5), 1, (1, 2), 1),  # one whole tile a row
    (2, 3, 7, 17, 35, 3, (2, 1), 1, 1)])  # grad_input's row phases: every other row, in place
@pytest.mark.parametrize("weight_format", [torch.contiguous_format, torch.channels_last], ids=["nchw_weight", "cl_weight"])
def test_few_input_channels_write_nchw_rows_in_place(batch, channels, out_channels, height, width, kernel,
                                                     stride, padding, dilation, weight_format):
    # Over NCHW with stride 1 and fewer than 8 input channels (first layers) the planar
    # kernel runs and, on rows of 16 pixels or more, gives each output row tiles of its own
    # and writes the output in place; so does grad_input (each stride phase whose pixels are
    # contiguous) where the forward has fewer than 8 output channels, a lane block.
    torch.manual_seed(height * width + channels)
    kernel, stride, padding, dilation = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    x = torch.randn(batch, channels, height, width, dtype=torch.float64)
    w = torch.randn(out_channels, channels, *kernel, dtype=torch.float64)
    b = torch.randn(out_channels, dtype=torch.float64)
    want = F.conv2d(x, w, b, stride, padding, dilation)
    # A channels_last weight is read where it lies, taps a channel block apart.
    got = cf.conv2d(x.float(), w.float().contiguous(memory_format=weight_format), b.float(), stride, padding,
                    dilation)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    # grad_input of the convolution the other way round, out_channels -> channels.
    x2 = torch.randn(batch, out_channels, height, width, dtype=torch.float64)
    w2 = torch.randn(channels, out_channels, *kernel, dtype=torch.float64)
    grad = torch.randn(batch, channels, *want.shape[2:], dtype=torch.float64)
    args = (list(stride), list(padding), list(dilation), 1)
    got_grads = _our_grads(grad.float(), x2.float(), w2.float().contiguous(memory_format=weight_format), args)
    for name, g, e in zip(["input", "weight"], got_grads, _native_grads(grad, x2, w2, args)):
        torch.testing.assert_close(g.double(), e, rtol=1e-4, atol=1e-3, msg=lambda m: f"grad of {name}: {m}")


def _dense(batch, in_channels, out_channels, height, width, kernel, stride=1, padding=0, dilation=1):
    """A dense NCHW ConvCase without bias; int arguments stand for both sides."""
    return ConvCase(batch, in_channels, 1, 1, out_channels, height, width, _pair(kernel), _pair(stride), padding,
                    _pair(dilation), False, False, False)


EDGE_GEOMETRY = [
    # One output channel and padding kernel - 1: grad_input reads grad_output as NHWC in
    # place, a one-channel tensor, contiguous whatever its channel stride (H * W), which the
    # kernel must not take for NHWC's.
    _dense(2, 16, 1, 9, 20, 3, padding=2),
    _dense(2, 16, 1, 9, 20, (2, 1), padding=(2, 0)),
    # Along a dimension of one tap dilation changes nothing (a strided 1x1 convolution with
    # dilation took the strided planar kernel, which asks for unit dilation).
    _dense(2, 9, 10, 11, 13, 1, stride=(1, 2), dilation=(2, 1)),
    _dense(2, 9, 10, 11, 13, 1, stride=(2, 1), dilation=2),
    _dense(2, 9, 10, 11, 13, (1, 3), stride=(2, 1), dilation=(3, 2)),
    _dense(2, 9, 10, 11, 13, (3, 1), stride=2, dilation=(2, 3)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", EDGE_GEOMETRY, ids=str)
def test_conv2d_edge_geometry_matches_native(case, device):
    check_against_native(case, torch.float32, device,
                         lambda x, w, b, kw: cf.conv2d(x, w, b, groups=case.groups, **kw))


# The CPU grad_weight splits the output rows over the threads where a thread's own sums
# are smaller than the input and grad_output (first layers, 1x1 over large planes), else
# the tiles of the sums: three threads split 2 images of 8 output rows mid-image.
WEIGHT_GRADIENT_SPLITS = [  # (channels, out_channels, kernel, stride, padding, size, channels_last)
    (3, 20, 3, 2, 1, (15, 17), False), (3, 20, 3, 2, 1, (15, 17), True), (3, 40, 7, 2, 3, (16, 30), True),
    (16, 24, 1, 1, 0, (8, 10), True), (24, 40, 3, 1, 1, (8, 6), True), (64, 64, 3, 1, 1, (8, 5), True),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", WEIGHT_GRADIENT_SPLITS, ids=str)
def test_grad_weight_split_over_threads_matches_native(case, threads, cpu_path):
    channels, out_channels, kernel, stride, padding, size, channels_last = case
    torch.manual_seed(channels * out_channels + kernel)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, channels, *size).contiguous(memory_format=memory_format)
    w = torch.randn(out_channels, channels, kernel, kernel).contiguous(memory_format=memory_format)
    params = ([stride] * 2, [padding] * 2, [1, 1], 1)
    grad_out = torch.randn(F.conv2d(x, w, None, *params).shape).contiguous(memory_format=memory_format)
    want = torch.ops.aten.convolution_backward(grad_out.double(), x.double(), w.double(), None, *params[:3], False,
                                               [0, 0], 1, [False, True, False])[1]
    with num_threads(threads):
        got = torch.ops.classic_ops.conv2d_grad_weight(grad_out, x, w, *params)
    torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-3)


def test_threads_calling_at_once_get_their_own_results():
    # The CPU kernels keep their large temporaries per calling thread between calls
    # (csrc/cpu/scratch.h): threads running different layers at once must not share them.
    import threading

    layers = [(8, 23, 16, 3, 2, 1), (13, 30, 11, 5, 1, 2), (16, 14, 24, 3, 1, 1)]
    errors = []
    start = threading.Barrier(len(layers))

    def run(seed, channels, width, out_channels, kernel, stride, padding):
        try:
            torch.manual_seed(seed)
            x = torch.randn(1, channels, width, width)
            w = torch.randn(out_channels, channels, kernel, kernel)
            want_out = F.conv2d(x, w, None, stride=stride, padding=padding)
            grad = torch.randn_like(want_out)
            args = ([stride] * 2, [padding] * 2, [1, 1], 1)
            want = _native_grads(grad, x, w, args)
            start.wait()
            for _ in range(20):
                torch.testing.assert_close(torch.ops.classic_ops.conv2d(x, w, None, *args), want_out,
                                           rtol=1e-4, atol=1e-4)
                got = _our_grads(grad, x, w, args)
                torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(got[1], want[1], rtol=1e-4, atol=1e-3)
        except Exception as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(seed, *layer)) for seed, layer in enumerate(layers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


@pytest.mark.skipif(sys.platform != "linux", reason="results go on huge pages on Linux only")
def test_large_cpu_results_live_on_huge_page_aligned_resizable_storage():
    # CPU results above 32 MB (which glibc maps afresh each time) are allocated 2 MB-aligned
    # and advised onto transparent huge pages (a 103 MB output on 4 KB pages took 25,000
    # page faults a call), and must still behave as any tensor: right values, storage
    # resizable, savable and shareable. Smaller results stay where glibc puts them.
    torch.manual_seed(0)
    x = torch.randn(4, 3, 224, 224, dtype=torch.float64).float()
    w = torch.randn(96, 3, 3, 3)
    y = cf.conv2d(x, w, padding=1).requires_grad_()
    pooled, indices = cf.max_pool2d(y, 1, return_indices=True)
    (grad_y,) = torch.autograd.grad(pooled, y, torch.randn_like(pooled))
    for t in (y, pooled, indices, grad_y):
        assert t.nbytes > 32 << 20 and t.data_ptr() % (2 << 20) == 0 and _C.on_huge_pages(t)
        assert t.untyped_storage().resizable()
    small = cf.max_pool2d(y.detach(), 2)
    # (Where glibc puts it can be 2 MB-aligned too, by chance: the allocator is the check.)
    assert small.nbytes < 32 << 20 and not _C.on_huge_pages(small)
    torch.testing.assert_close(y.detach(), F.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-4)
    kept = y.detach().clone()
    buffer = io.BytesIO()
    torch.save(y.detach(), buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer), kept)
    kept_pooled = pooled.detach().clone()
    shared = pooled.detach().share_memory_()
    assert shared.is_shared() and torch.equal(shared, kept_pooled)
    grown = y.detach()
    grown.resize_(8, 96, 224, 224)
    assert grown.data_ptr() % (2 << 20) == 0 and torch.equal(grown[:4], kept)
