"""The CUDA kernels of csrc/cuda, as written, run on the CPU emulator (tests/cuda_emulator)
against float64 references, so that machines without a GPU (CI's) execute them too.

Each launcher: the tensor-core implicit GEMMs (forward with both tiles, on the warp MMA
and, for 128 x 128 tiles, on Hopper's warpgroup MMA, the split reduction, bias and ReLU,
negative padding as the strided grad_input's phases use it; grad_weight), the direct
kernels, the depthwise kernels and the max-pool kernels, forward and backward, in every
element type they are built for. Each GEMM case runs twice: cp.async copies landing when
issued, and only at the wait that covers them (the warpgroup MMAs at the other extreme).

Then the ops themselves on CPU tensors served by the CUDA backend (cuda_emulator's op
library and op_cases.py): the op layer and csrc/cuda/backend.cpp's host code choose the
kernels, layouts, padded channels, stride phases and scratch as on a GPU.

What the emulator cannot show (timing, the tensor cores' own rounding, the memory system
beyond barriers and warp collectives) needs the GPU tests of test_cuda_kernels.py."""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import cuda_emulator
from cuda_emulator import op_cases
from cuda_emulator.references import (UNIT, assert_close, assert_conv_gradients,
                                      assert_max_pool_grad_input)

pytestmark = pytest.mark.skipif(not cuda_emulator.SUPPORTED,
                                reason="the emulator's fibers switch in x86-64 Linux assembly")

H200_MULTIPROCESSORS = 132
GEMM_DTYPES = [torch.float16, torch.bfloat16, torch.float32]
ALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("emulated_cuda")
    try:
        return (directory, *cuda_emulator.build(directory))
    except subprocess.CalledProcessError as error:
        pytest.fail(f"building the emulator failed:\n{error.stderr}")


@pytest.fixture(scope="module")
def emulator(built):
    return built[1]


@pytest.fixture(scope="module")
def op_results(built):
    """op_cases.py's results, from a process of its own."""
    directory, _, op_library = built
    results = directory / "op_results.json"
    run = subprocess.run([sys.executable, "-m", "cuda_emulator.op_cases", str(op_library),
                          str(results)], cwd=cuda_emulator.HERE.parent, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, f"op_cases.py failed:\n{run.stderr[-3000:]}"
    return json.loads(results.read_text())


@pytest.mark.parametrize("case", op_cases.CASES)
def test_op_through_the_cuda_backend(op_results, case):
    assert op_results[case] == "ok", op_results[case]


def conv_geometry(batch, in_channels, height, width, out_channels, kernel, stride=(1, 1),
                  padding=(0, 0), dilation=(1, 1), groups=1, out_size=None):
    """ConvGeometry's fields, in order."""
    out_h, out_w = out_size or [
        (size + 2 * pad - dil * (k - 1) - 1) // st + 1
        for size, k, st, pad, dil in zip((height, width), kernel, stride, padding, dilation)]
    return [batch, in_channels, height, width, out_channels, *kernel, out_h, out_w, *stride,
            *padding, *dilation, groups]


def conv_reference(x, w, bias, g):
    """F.conv2d in float64 for geometry g, padding of any sign (negative crops the input)
    and an output of the geometry's size, whatever the padding gives."""
    _, _, height, width, _, kh, kw, out_h, out_w, sh, sw, ph, pw, dh, dw, groups = g
    extra_h = max(0, (out_h - 1) * sh + (kh - 1) * dh + 1 - (height + 2 * ph))
    extra_w = max(0, (out_w - 1) * sw + (kw - 1) * dw + 1 - (width + 2 * pw))
    padded = F.pad(x.double(), (pw, pw + extra_w, ph, ph + extra_h))
    out = F.conv2d(padded, w.double(), None if bias is None else bias.double(), (sh, sw), 0,
                   (dh, dw), groups)
    return out[:, :, :out_h, :out_w]


def to_tf32(t, truncate):
    """float as TF32: rounded as the warp MMA's cvt.rna does (to nearest, ties away), or
    truncated as the warpgroup MMA reads floats from shared memory (their upper 19 bits)."""
    bits = t.float().contiguous().view(torch.int32)
    rounded = ((bits if truncate else bits + 0x1000) & ~0x1FFF).view(torch.float32)
    return torch.where(torch.isfinite(t), rounded, t.float())


def as_multiplied(t, dtype, warpgroup=False):
    """The operand values the tensor cores multiply."""
    return to_tf32(t, warpgroup).double() if dtype == torch.float32 else t.double()


def gemm_splits(emulator, kernel, g, dtype, splits):
    """`splits`, or where None the split count the backend would choose on an H200, after
    checking that the GEMM `kernel` ("forward" or "grad_weight") takes g in dtype."""
    element_bytes = torch.finfo(dtype).bits // 8
    prefix = "implicit_gemm_" if kernel == "forward" else "implicit_gemm_grad_weight_"
    assert emulator.call(prefix + "fits", g, element_bytes)
    if splits is not None:
        return splits
    return emulator.call(f"implicit_gemm_{kernel}_splits", g, element_bytes, H200_MULTIPROCESSORS)


def random_channels_last(emulator, shape, dtype):
    x = torch.randn(shape).to(dtype)
    return emulator.guarded(x.contiguous(memory_format=torch.channels_last))


def nan_tensor(shape, dtype, memory_format=torch.contiguous_format):
    return torch.full(shape, float("nan"), dtype=dtype).contiguous(memory_format=memory_format)


# (batch, in_channels, height, width, out_channels, kernel, stride, padding, dilation,
#  output size or None, bias, relu, splits or None for the H200's choice)
GEMM_FORWARD_CASES = [
    (2, 16, 8, 8, 16, (3, 3), (1, 1), (1, 1), (1, 1), None, True, False, None),  # 256x64 tile
    (1, 32, 9, 7, 130, (3, 3), (1, 1), (1, 1), (1, 1), None, True, True, None),  # 128x128, 2 tiles
    (3, 24, 11, 10, 70, (3, 3), (2, 2), (1, 1), (1, 1), None, True, False, None),
    (2, 16, 12, 12, 10, (3, 3), (1, 1), (2, 2), (2, 2), None, True, True, None),  # 10: no vectors
    (2, 64, 5, 6, 36, (1, 1), (1, 1), (0, 0), (1, 1), None, False, False, None),
    (1, 16, 7, 7, 20, (3, 2), (1, 1), (-1, -2), (1, 1), (7, 7), True, False, None),
    (2, 16, 6, 5, 24, (2, 1), (1, 1), (0, -1), (1, 1), (6, 5), False, False, None),
    (2, 8, 9, 9, 12, (7, 3), (3, 1), (3, 1), (1, 1), None, True, False, None),
    (1, 256, 4, 4, 64, (3, 3), (1, 1), (1, 1), (1, 1), None, True, True, 5),  # split, ReLU
    (1, 128, 3, 3, 136, (3, 3), (1, 1), (1, 1), (1, 1), None, True, False, None),  # H200 splits
    (1, 16, 20, 20, 8, (3, 3), (1, 1), (1, 1), (1, 1), None, True, False, None),  # 400 pixels
]


@pytest.mark.parametrize("copies_land_at_issue", [False, True], ids=["at_wait", "at_issue"])
@pytest.mark.parametrize("case,dtype,mma", [
    (case, dtype, mma) for case in GEMM_FORWARD_CASES for dtype in GEMM_DTYPES
    for mma in ("warp", "warpgroup64", "warpgroup128")
    # the warpgroup MMA kernels (64- or 128-byte steps): 128 x 128 tiles, for more than 64
    # output channels
    if mma == "warp" or case[4] > 64])
def test_implicit_gemm_forward(emulator, case, dtype, mma, copies_land_at_issue):
    (batch, in_channels, height, width, out_channels, kernel, stride, padding, dilation,
     out_size, with_bias, relu, splits) = case
    g = conv_geometry(batch, in_channels, height, width, out_channels, kernel, stride, padding,
                      dilation, out_size=out_size)
    splits = gemm_splits(emulator, "forward", g, dtype, splits)
    warpgroup_row_bytes = {"warp": 0, "warpgroup64": 64, "warpgroup128": 128}[mma]
    warpgroup = warpgroup_row_bytes != 0
    assert emulator.call("implicit_gemm_warpgroup_fits", g) or not warpgroup
    torch.manual_seed(len(GEMM_FORWARD_CASES) * GEMM_DTYPES.index(dtype) +
                      GEMM_FORWARD_CASES.index(case))
    x = random_channels_last(emulator, (batch, in_channels, height, width), dtype)
    w = torch.randn(out_channels, in_channels, *kernel).to(dtype)
    w_krsc = emulator.guarded(w.permute(0, 2, 3, 1).contiguous())
    bias = emulator.guarded(torch.randn(out_channels).to(dtype)) if with_bias else None
    y = emulator.guarded(nan_tensor((batch, out_channels, g[7], g[8]), dtype, torch.channels_last))
    partials = emulator.guarded(torch.full((splits * y.numel(),), float("nan"))) \
        if splits > 1 else None
    assert emulator.call("conv2d_forward_implicit_gemm", dtype, x, w_krsc, bias, y, y.stride(), g,
                         relu, partials, splits, warpgroup_row_bytes,
                         copies_land_at_issue=copies_land_at_issue) == 0

    xd, wd = as_multiplied(x, dtype, warpgroup), as_multiplied(w, dtype, warpgroup)
    want = conv_reference(xd, wd, bias, g)
    if relu:
        want = want.relu()
    magnitude = conv_reference(xd.abs(), wd.abs(), None if bias is None else bias.abs(), g)
    assert_close(y, want, magnitude, UNIT[dtype], f"forward, {splits} split(s)")


@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("mma", ["warp", "warpgroup128"])
def test_implicit_gemm_forward_into_a_window(emulator, mma, splits):
    # A stride phase of a channels_last grad_input: every other row and column of a larger
    # tensor, which the epilogue (or, split, sum_partials_kernel) writes in place.
    dtype = torch.bfloat16
    g = conv_geometry(2, 32, 7, 6, 72, (3, 3), padding=(1, 1))
    assert emulator.call("implicit_gemm_fits", g, 2)
    torch.manual_seed(splits)
    x = random_channels_last(emulator, (2, 32, 7, 6), dtype)
    w = torch.randn(72, 32, 3, 3).to(dtype)
    w_krsc = emulator.guarded(w.permute(0, 2, 3, 1).contiguous())
    bias = emulator.guarded(torch.randn(72).to(dtype))
    whole = emulator.guarded(nan_tensor((2, 72, 15, 13), dtype, torch.channels_last))
    window = whole[:, :, 1::2, 0::2][:, :, :7, :6]
    partials = emulator.guarded(torch.full((splits * window.numel(),), float("nan"))) \
        if splits > 1 else None
    assert emulator.call("conv2d_forward_implicit_gemm", dtype, x, w_krsc, bias, window,
                         window.stride(), g, False, partials, splits,
                         0 if mma == "warp" else 128) == 0
    xd, wd = x.double(), w.double()
    assert_close(window, conv_reference(xd, wd, bias, g),
                 conv_reference(xd.abs(), wd.abs(), bias.abs(), g), UNIT[dtype], "window")
    outside = torch.ones(whole.shape, dtype=torch.bool)
    outside[:, :, 1::2, 0::2][:, :, :7, :6] = False
    assert whole[outside].isnan().all(), "wrote outside the window"


# (batch, in_channels, height, width, out_channels, kernel, stride, padding, dilation,
#  splits or None for the H200's choice)
GEMM_GRAD_WEIGHT_CASES = [
    (2, 16, 8, 8, 16, (3, 3), (1, 1), (1, 1), (1, 1), None),
    (1, 32, 9, 7, 136, (3, 3), (1, 1), (1, 1), (1, 1), None),
    (3, 24, 11, 10, 72, (3, 3), (2, 2), (1, 1), (1, 1), None),
    (2, 16, 12, 12, 16, (3, 3), (1, 1), (2, 2), (2, 2), None),
    (2, 64, 5, 6, 40, (1, 1), (1, 1), (0, 0), (1, 1), None),
    (2, 8, 9, 9, 24, (7, 3), (3, 1), (3, 1), (1, 1), None),
    (4, 48, 10, 10, 32, (3, 3), (1, 1), (1, 1), (1, 1), 3),
    (1, 8, 40, 30, 8, (5, 5), (1, 1), (2, 2), (1, 1), None),
]


@pytest.mark.parametrize("copies_land_at_issue", [False, True], ids=["at_wait", "at_issue"])
@pytest.mark.parametrize("dtype", GEMM_DTYPES, ids=str)
@pytest.mark.parametrize("case", GEMM_GRAD_WEIGHT_CASES)
def test_implicit_gemm_grad_weight(emulator, case, dtype, copies_land_at_issue):
    batch, in_channels, height, width, out_channels, kernel, stride, padding, dilation, splits = case
    g = conv_geometry(batch, in_channels, height, width, out_channels, kernel, stride, padding,
                      dilation)
    splits = gemm_splits(emulator, "grad_weight", g, dtype, splits)
    torch.manual_seed(len(GEMM_GRAD_WEIGHT_CASES) * GEMM_DTYPES.index(dtype) +
                      GEMM_GRAD_WEIGHT_CASES.index(case))
    x = random_channels_last(emulator, (batch, in_channels, height, width), dtype)
    dy = random_channels_last(emulator, (batch, out_channels, g[7], g[8]), dtype)
    dw_krsc = emulator.guarded(nan_tensor((out_channels, *kernel, in_channels), dtype))
    partials = emulator.guarded(torch.full((splits * dw_krsc.numel(),), float("nan")))
    assert emulator.call("conv2d_grad_weight_implicit_gemm", dtype, dy, x, partials, splits,
                         dw_krsc, g, copies_land_at_issue=copies_land_at_issue) == 0

    xd, dyd = as_multiplied(x, dtype), as_multiplied(dy, dtype)
    shape = (out_channels, in_channels, *kernel)

    def grad_weight(x, dy):
        return torch.nn.grad.conv2d_weight(x, shape, dy, stride, padding, dilation)

    assert_close(dw_krsc.permute(0, 3, 1, 2), grad_weight(xd, dyd),
                 grad_weight(xd.abs(), dyd.abs()), UNIT[dtype], f"grad_weight, {splits} split(s)")


def test_emulator_catches_a_copy_past_a_buffer(emulator):
    g = conv_geometry(1, 16, 8, 8, 16, (3, 3), padding=(1, 1))
    x = torch.randn(1, 16, 8, 8).half().contiguous(memory_format=torch.channels_last)
    w_krsc = torch.randn(16, 3, 3, 16).half()
    y = nan_tensor((1, 16, 8, 8), torch.float16, torch.channels_last)
    short_x = x[:, :, :4]  # the kernel reads all 8 rows
    with pytest.raises(AssertionError, match="cp.async reads past the end of a buffer"):
        emulator.call("conv2d_forward_implicit_gemm", torch.float16, short_x, w_krsc, None, y,
                      y.stride(), g, False, None, 1, 0)


# (batch, in_channels, out_channels, height, width, kernel, stride, padding, dilation, groups)
DIRECT_CASES = [
    (2, 6, 4, 9, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (2, 6, 9, 9, 8, (3, 2), (2, 1), (1, 0), (1, 2), 3),
    (1, 4, 8, 7, 7, (1, 1), (1, 1), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("case", DIRECT_CASES)
def test_direct_convolution(emulator, case, dtype):
    batch, in_channels, out_channels, height, width, kernel, stride, padding, dilation, groups = case
    g = conv_geometry(batch, in_channels, height, width, out_channels, kernel, stride, padding,
                      dilation, groups)
    torch.manual_seed(DIRECT_CASES.index(case))
    x = emulator.guarded(torch.randn(batch, in_channels, height, width).to(dtype))
    w = emulator.guarded(torch.randn(out_channels, in_channels // groups, *kernel).to(dtype))
    bias = emulator.guarded(torch.randn(out_channels).to(dtype))
    dy = emulator.guarded(torch.randn(batch, out_channels, g[7], g[8]).to(dtype))
    y = emulator.guarded(nan_tensor(dy.shape, dtype))
    dx = emulator.guarded(nan_tensor(x.shape, dtype))
    dw = emulator.guarded(nan_tensor(w.shape, dtype))
    assert emulator.call("conv2d_forward", dtype, x, w, bias, y, g) == 0
    assert emulator.call("conv2d_grad_input", dtype, dy, w, dx, g) == 0
    assert emulator.call("conv2d_grad_weight", dtype, dy, x, dw, g) == 0

    xd, wd = x.double(), w.double()
    assert_close(y, conv_reference(xd, wd, bias, g),
                 conv_reference(xd.abs(), wd.abs(), bias.abs(), g), UNIT[dtype], "forward")
    assert_conv_gradients(dx, dw, x, w, dy, stride, padding, dilation, groups, UNIT[dtype])


# (batch, channels per vector or 3 for NCHW, multiplier, height, width, kernel, stride,
#  padding, dilation, bias): the 3x3 and 7x7 shapes compiled in; other windows at unit stride
#  sliding along the rows (a ring of 8 columns NCHW, 4 channels_last: windows of 1, 5, 8,
#  9 and 11 columns take none, part, one and more rounds of it); the rest read at run time
DEPTHWISE_CASES = [
    (2, 1, 13, 11, (3, 3), (1, 1), (1, 1), (1, 1), True),
    (2, 1, 13, 11, (3, 3), (2, 2), (1, 1), (1, 1), True),
    (1, 1, 15, 14, (7, 7), (1, 1), (3, 3), (1, 1), True),
    (1, 2, 15, 14, (7, 7), (2, 2), (3, 3), (1, 1), True),
    (1, 2, 9, 10, (5, 5), (1, 1), (2, 2), (1, 1), False),
    (1, 2, 7, 19, (2, 8), (1, 1), (1, 3), (1, 1), False),
    (1, 1, 6, 5, (9, 9), (1, 1), (4, 4), (1, 1), True),
    (1, 1, 5, 17, (1, 1), (1, 1), (0, 0), (1, 1), True),
    (1, 1, 12, 12, (3, 3), (1, 1), (2, 2), (2, 2), True),
    (1, 2, 9, 40, (3, 5), (2, 1), (0, 2), (1, 1), True),
    (1, 1, 20, 36, (11, 11), (1, 1), (5, 5), (1, 1), True),
    # strided, with outputs on both of a tile thread's rows (the second 8 rows down)
    (1, 1, 21, 12, (5, 5), (2, 2), (2, 2), (1, 1), True),
]


@pytest.mark.parametrize("case,dtype,layout", [
    (case, dtype, layout) for case in DEPTHWISE_CASES for dtype in ALL_DTYPES
    for layout in ("nchw", "channels_last")
    # the channels_last kernel: 16-byte vectors of 32-bit or narrower types, multiplier 1
    if layout == "nchw" or (dtype != torch.float64 and case[1] == 1)])
def test_depthwise_forward(emulator, case, dtype, layout):
    batch, multiplier, height, width, kernel, stride, padding, dilation, with_bias = case
    channels_last = layout == "channels_last"
    channels = 2 * 16 // (torch.finfo(dtype).bits // 8) if channels_last else 3
    out_channels = channels * multiplier
    g = conv_geometry(batch, channels, height, width, out_channels, kernel, stride, padding,
                      dilation, groups=channels)
    torch.manual_seed(DEPTHWISE_CASES.index(case))
    x = torch.randn(batch, channels, height, width).to(dtype)
    w = torch.randn(out_channels, 1, *kernel).to(dtype)
    bias = emulator.guarded(torch.randn(out_channels).to(dtype)) if with_bias else None
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    y = emulator.guarded(nan_tensor((batch, out_channels, g[7], g[8]), dtype, memory_format))
    if channels_last:
        assert emulator.call("depthwise_channels_last_fits", g, torch.finfo(dtype).bits // 8)
        w_rsc = emulator.guarded(w.reshape(out_channels, -1).t().contiguous())
        x_in = emulator.guarded(x.contiguous(memory_format=memory_format))
        launched = emulator.call("depthwise_conv2d_forward_channels_last", dtype, x_in, w_rsc,
                                 bias, y, g)
    else:
        assert emulator.call("depthwise_nchw_fits", g, 8 if dtype == torch.float64 else 4)
        launched = emulator.call("depthwise_conv2d_forward_nchw", dtype, emulator.guarded(x),
                                 emulator.guarded(w), bias, y, g)
    assert launched == 0
    assert_close(y, conv_reference(x, w, bias, g),
                 conv_reference(x.abs(), w.abs(), None if bias is None else bias.abs(), g),
                 UNIT[dtype], "depthwise forward")


@pytest.mark.parametrize("splits", [1, None], ids=["one_split", "device_splits"])
@pytest.mark.parametrize("dtype", GEMM_DTYPES, ids=str)
@pytest.mark.parametrize("case", [case for case in DEPTHWISE_CASES if case[1] == 1])
def test_depthwise_channels_last_backward(emulator, case, dtype, splits):
    # grad_input gathered (any stride; the backend takes the forward kernel at stride 1) and
    # grad_weight by channel vectors and tap groups, its pixels split as on an H200 or not.
    # 40 channels: a block of 4 or 8 vectors and a second one partly idle.
    batch, _, height, width, kernel, stride, padding, dilation, _ = case
    channels = 5 * 16 // (torch.finfo(dtype).bits // 8)
    g = conv_geometry(batch, channels, height, width, channels, kernel, stride, padding,
                      dilation, groups=channels)
    element_bytes = torch.finfo(dtype).bits // 8
    assert emulator.call("depthwise_channels_last_fits", g, element_bytes)
    splits = splits or emulator.call("depthwise_channels_last_grad_weight_splits", g,
                                     element_bytes, H200_MULTIPROCESSORS)
    torch.manual_seed(DEPTHWISE_CASES.index(case))
    cl = torch.channels_last
    x = emulator.guarded(torch.randn(batch, channels, height, width).to(dtype).contiguous(
        memory_format=cl))
    w = torch.randn(channels, 1, *kernel).to(dtype)
    dy = emulator.guarded(torch.randn(batch, channels, g[7], g[8]).to(dtype).contiguous(
        memory_format=cl))
    dx = emulator.guarded(nan_tensor(x.shape, dtype, cl))
    dw = emulator.guarded(nan_tensor(w.shape, dtype))
    partials = emulator.guarded(torch.full((splits * w.numel(),), float("nan")))
    w_rsc = emulator.guarded(w.reshape(channels, -1).t().contiguous())
    assert emulator.call("depthwise_conv2d_grad_input_channels_last", dtype, dy, w_rsc, dx, g) == 0
    assert emulator.call("depthwise_conv2d_grad_weight_channels_last", dtype, dy, x, partials,
                         splits, dw, g) == 0
    assert_conv_gradients(dx, dw, x, w, dy, stride, padding, dilation, channels, UNIT[dtype])


def pool_geometry(batch, channels, height, width, kernel, stride, padding, dilation, ceil_mode):
    """PoolGeometry's fields, in order (output sizes as max_pool2d's)."""
    def out_size(size, k, st, pad, dil):
        out = (size + 2 * pad - dil * (k - 1) - 1 + (st - 1 if ceil_mode else 0)) // st + 1
        return out - 1 if ceil_mode and (out - 1) * st >= size + pad else out
    out_h, out_w = [out_size(*a) for a in zip((height, width), kernel, stride, padding, dilation)]
    return [batch, channels, height, width, out_h, out_w, *kernel, *stride, *padding, *dilation]


def pool_input(shape, dtype):
    """Small integers (ties in most windows), with some NaN and infinities."""
    x = torch.randint(-4, 5, shape).to(dtype)
    for value in (float("nan"), float("inf"), float("-inf")):
        x[torch.rand(shape) < 0.03] = value
    return x


# (batch, channels or None for two vectors' worth, height, width, kernel, stride, padding,
#  dilation, ceil_mode, layout): "nchw" (2x2/2 halving planes of a width of 4k outputs take
#  the vector kernel, other contiguous pools the FastDivisor one), "channels_last" (the
#  strided kernel), "strided" (a view), "vectors" (channels_last, 16-byte channel vectors)
POOL_CASES = [
    (2, 3, 8, 16, (2, 2), (2, 2), (0, 0), (1, 1), False, "nchw"),
    (1, 5, 6, 24, (2, 2), (2, 2), (0, 0), (1, 1), False, "nchw"),
    (2, 3, 8, 12, (2, 2), (2, 2), (0, 0), (1, 1), False, "nchw"),
    (2, 3, 9, 16, (2, 2), (2, 2), (0, 0), (1, 1), False, "nchw"),
    (2, 4, 13, 11, (3, 3), (2, 2), (1, 1), (1, 1), False, "nchw"),
    (1, 3, 13, 11, (3, 2), (2, 1), (1, 0), (2, 1), True, "nchw"),
    (2, 3, 10, 9, (3, 3), (2, 2), (1, 1), (1, 1), False, "channels_last"),
    (2, 3, 10, 9, (3, 3), (2, 2), (1, 1), (1, 1), False, "strided"),
    (2, None, 9, 7, (3, 3), (2, 2), (1, 1), (1, 1), False, "vectors"),
    (1, None, 8, 8, (2, 2), (2, 2), (0, 0), (1, 1), True, "vectors"),
]


@pytest.mark.parametrize("with_indices", [True, False], ids=["indices", "no_indices"])
@pytest.mark.parametrize("case,dtype", [
    (case, dtype) for case in POOL_CASES for dtype in ALL_DTYPES
    # the vector kernel: 16-byte vectors of 32-bit or narrower types
    if case[-1] != "vectors" or dtype != torch.float64])
def test_max_pool(emulator, case, dtype, with_indices):
    batch, channels, height, width, kernel, stride, padding, dilation, ceil_mode, layout = case
    channels = channels or 2 * 16 // (torch.finfo(dtype).bits // 8)
    g = pool_geometry(batch, channels, height, width, kernel, stride, padding, dilation,
                      ceil_mode)
    torch.manual_seed(POOL_CASES.index(case))
    channels_last = layout in ("channels_last", "vectors")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if layout == "strided":  # no guards: a view is no dense tensor to copy
        x = pool_input((batch, channels, height, width + 3), dtype)[..., 1:width + 1]
    else:
        x = emulator.guarded(pool_input((batch, channels, height, width), dtype)
                             .contiguous(memory_format=memory_format))
    out_shape = (batch, channels, g[4], g[5])
    y = emulator.guarded(nan_tensor(out_shape, dtype, memory_format))
    indices = emulator.guarded(torch.full(out_shape, -1).contiguous(memory_format=memory_format)) \
        if with_indices else None
    if layout == "vectors":
        launched = emulator.call("max_pool2d_forward_channels_last", dtype, x, y, indices, g)
    else:
        launched = emulator.call("max_pool2d_forward", dtype, x, list(x.stride()), y, indices,
                                 list(y.stride()), channels_last, g)
    assert launched == 0
    want, want_indices = F.max_pool2d(x.double(), kernel, stride, padding, dilation,
                                      ceil_mode=ceil_mode, return_indices=True)
    torch.testing.assert_close(y.double(), want, rtol=0, atol=0, equal_nan=True)
    if not with_indices:
        return
    torch.testing.assert_close(indices, want_indices, rtol=0, atol=0)

    dy = emulator.guarded(torch.randn(out_shape).to(dtype).contiguous(memory_format=memory_format))
    dx = emulator.guarded(nan_tensor(x.shape, dtype, memory_format))
    assert emulator.call("max_pool2d_grad_input", dtype, dy, indices, list(dy.stride()), dx,
                         list(dx.stride()), channels_last, g) == 0
    assert_max_pool_grad_input(dx, dy, indices, UNIT[dtype])
