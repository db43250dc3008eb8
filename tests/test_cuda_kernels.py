"""The CUDA fast paths and contracts. Every case here is shaped so that the dispatch takes
a fast kernel: the tensor-core implicit GEMMs (groups 1; half/bfloat16, or float with TF32
allowed; forward, grad_input at any stride, grad_weight, in channels zero-padded to whole
vectors; 128 x 128 tiles, and 256 x 64 for 64 output channels or fewer; the reduction
split over blocks; the forward on Hopper's warpgroup MMA where the build has sm_90a), the
depthwise row segments (3x3, 7x7) and shared-memory tiles (NCHW)
and channel vectors (channels_last, backward included), the channels_last max-pool vectors and the NCHW 2x2
pool vectors. The foundation grid covers the direct kernels and the other NCHW pools.
References are float64 on the CPU."""
import pytest
import torch
import torch.nn.functional as F

from classic_ops import functional as cf
from classic_ops import _C
from conftest import HAS_CUDA, forward_and_grads, memory_format_of

pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and a CUDA build")

# ||ours - float64|| / ||float64||: rounding of the output for half/bfloat16, TF32's 10-bit
# mantissa for float (near 3e-4 in practice), float64 summation-order noise.
RELATIVE_ERROR = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 2e-3,
                  torch.float64: 1e-12}
EXACT_FLOAT32 = 1e-5


def dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def relative_error(got, want):
    assert got.shape == want.shape
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    return ((got - want).norm() / want.norm()).item()


# (batch, in_channels, out_channels, height, width, kernel, stride, padding, dilation, bias)
GEMM_CASES = [
    (2, 16, 24, 9, 11, 3, 1, 1, 1, True),
    (1, 8, 200, 7, 7, 3, 2, 1, 1, False),
    (3, 64, 130, 13, 10, 1, 1, 0, 1, True),
    (2, 32, 64, 15, 15, 1, 2, 0, 1, False),
    (1, 72, 40, 12, 12, 5, 1, 2, 1, True),
    (2, 24, 16, 17, 9, 3, 1, 2, 2, False),
    (1, 16, 8, 20, 20, 7, 2, 3, 1, True),
    (2, 256, 256, 14, 14, 3, 1, 1, 1, True),
    (4, 32, 48, 20, 20, 3, 1, 0, 1, False),
    (1, 16, 16, 5, 5, 3, 1, 3, 1, True),  # padding beyond the kernel: direct grad_input
    (2, 3, 16, 12, 12, 7, 2, 3, 1, True),  # 3 colours: zero-padded to whole vectors
    (1, 3, 64, 10, 10, 3, 1, 1, 1, False),
    (1, 16, 16, 11, 10, 5, 3, 2, 1, True),  # grad_input by stride phase, 1 or 2 taps each
    (1, 16, 24, 13, 13, 3, 2, 2, 2, False),  # strided and dilated: grad_output spread
]


def check_convolution_and_grads(case, dtype, fmt):
    """cf.conv2d for case (a GEMM_CASES row) in dtype and memory format fmt, forward and
    gradients, against float64 on the CPU (float32 as TF32). Returns the inputs, conv2d's
    keyword arguments and the float64 output, for further checks."""
    n, c, k, h, w, r, stride, padding, dilation, has_bias = case
    torch.backends.cudnn.allow_tf32 = True  # the float32 case runs as TF32 (fixture restores)
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
    weight = torch.randn(k, c, r, r, device="cuda", dtype=dtype) / (c * r * r) ** 0.5
    bias = torch.randn(k, device="cuda", dtype=dtype) if has_bias else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    out_shape = F.conv2d(x[:1].float().cpu(), weight.float().cpu(), **kwargs).shape[1:]
    grad_out = torch.randn(n, *out_shape, device="cuda", dtype=dtype)
    want, want_grads = forward_and_grads(
        lambda *t: F.conv2d(*t, **kwargs),
        [t.double().cpu() if t is not None else None for t in (x, weight, bias)], grad_out.double().cpu())
    got, got_grads = forward_and_grads(lambda *t: cf.conv2d(*t, **kwargs), (x, weight, bias), grad_out)
    assert got.dtype == dtype
    assert got.is_contiguous(memory_format=fmt)
    assert relative_error(got, want) < RELATIVE_ERROR[dtype]
    for name, g, g_want in zip(["input", "weight", "bias"], got_grads, want_grads):
        assert relative_error(g, g_want) < RELATIVE_ERROR[dtype], f"grad of {name}"
    return (x, weight, bias), kwargs, want


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=dtype_name)
@pytest.mark.parametrize("case", GEMM_CASES, ids=str)
def test_cuda_tensor_core_convolution_matches_float64(case, dtype, channels_last):
    check_convolution_and_grads(
        case, dtype, torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=dtype_name)
def test_cuda_split_reduction_adds_bias_and_relu_once(dtype):
    # One 128-pixel tile of output and a 4608-deep reduction: far too few tiles to fill a
    # GPU, so the forward GEMM splits the reduction over blocks and a second kernel adds
    # the parts, then the bias and the ReLU.
    torch.backends.cudnn.allow_tf32 = True
    x = torch.randn(2, 512, 7, 7, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(64, 512, 3, 3, device="cuda", dtype=dtype) / 48
    bias = torch.randn(64, device="cuda", dtype=dtype)
    want = torch.relu(F.conv2d(x.double().cpu(), weight.double().cpu(), bias.double().cpu(), padding=1))
    assert (want == 0).any() and (want > 0).any()
    got = cf.conv2d(x, weight, bias, padding=1, relu=True)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(got, want) < RELATIVE_ERROR[dtype]


def runs_warpgroup_mma():
    """Whether this build and GPU can run the forward GEMM on Hopper's warpgroup MMA."""
    return ("9.0a" in _C.cuda_archs.split(",") and
            torch.cuda.get_device_capability() == (9, 0))


@pytest.mark.skipif(not HAS_CUDA or not runs_warpgroup_mma(),
                    reason="needs a build for sm_90a (TORCH_CUDA_ARCH_LIST=9.0a) and a Hopper GPU")
@pytest.mark.parametrize("setting", ["1", "128"], ids=["64_byte_steps", "128_byte_steps"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=dtype_name)
@pytest.mark.parametrize("case", [  # more than 64 output channels: the warpgroup MMA
    (1, 8, 200, 7, 7, 3, 2, 1, 1, False),
    (3, 64, 130, 13, 10, 1, 1, 0, 1, True),
    (2, 256, 256, 14, 14, 3, 1, 1, 1, True),
    (2, 512, 96, 7, 7, 3, 1, 1, 1, True),  # split reduction
    (2, 3, 80, 12, 12, 7, 2, 3, 1, True),  # 3 colours, zero-padded
], ids=str)
def test_cuda_warpgroup_mma_forward_matches_float64(case, dtype, setting, monkeypatch):
    # grad_input, a forward GEMM too, takes the warpgroup MMA where in_channels > 64.
    monkeypatch.setenv("CLASSIC_OPS_WGMMA", setting)
    inputs, kwargs, want = check_convolution_and_grads(case, dtype, torch.channels_last)
    # and with the ReLU fused into the epilogue
    assert relative_error(cf.conv2d(*inputs, relu=True, **kwargs), want.relu()) < \
        RELATIVE_ERROR[dtype]


def test_cuda_float32_uses_tf32_only_when_allowed():
    x = torch.randn(2, 256, 14, 14, device="cuda").contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, device="cuda") / 48
    want = F.conv2d(x.double().cpu(), w.double().cpu(), padding=1)
    torch.backends.cudnn.allow_tf32 = False
    exact = relative_error(cf.conv2d(x, w, padding=1), want)
    torch.backends.cudnn.allow_tf32 = True
    tf32 = relative_error(cf.conv2d(x, w, padding=1), want)
    assert exact < EXACT_FLOAT32
    assert EXACT_FLOAT32 < tf32 < RELATIVE_ERROR[torch.float32]


# (batch, channels, multiplier, height, width, kernel, stride, padding, dilation)
DEPTHWISE_CASES = [
    (2, 32, 1, 16, 16, 3, 1, 1, 1),
    (2, 32, 1, 15, 17, 3, 2, 1, 1),
    (1, 16, 2, 12, 12, 3, 1, 1, 1),
    (1, 24, 1, 40, 40, 7, 1, 3, 1),
    (2, 24, 1, 28, 28, 5, 1, 2, 1),
    (1, 8, 1, 64, 70, 31, 1, 15, 1),
    (1, 8, 1, 33, 33, 5, 2, 4, 2),
    (3, 96, 1, 7, 7, 3, 1, 1, 1),
    (2, 40, 1, 50, 35, 3, 2, 0, 1),
    (2, 16, 1, 23, 29, 7, 2, 3, 1),
    (1, 16, 2, 9, 13, 7, 1, 3, 1),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=dtype_name)
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=str)
def test_cuda_depthwise_matches_float64(case, dtype, channels_last):
    # Forward and gradients: channels_last with multiplier 1 has backward kernels of its own
    # (grad_input by the forward kernel at stride 1 or gathered, grad_weight split over the
    # pixels); the others take the direct kernels.
    n, c, multiplier, h, w, r, stride, padding, dilation = case
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
    weight = torch.randn(c * multiplier, 1, r, r, device="cuda", dtype=dtype) / r
    bias = torch.randn(c * multiplier, device="cuda", dtype=dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    native = F.conv2d(x, weight, bias, groups=c, **kwargs)  # float64 answers in NCHW on CUDA
    grad_out = torch.randn(native.shape, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
    got, grads = forward_and_grads(lambda x, w, b: cf.depthwise_conv2d(x, w, b, **kwargs),
                                   (x, weight, bias), grad_out)
    want, want_grads = forward_and_grads(
        lambda x, w, b: F.conv2d(x, w, b, groups=c, **kwargs),
        (x.double().cpu(), weight.double().cpu(), bias.double().cpu()), grad_out.double().cpu())
    assert memory_format_of(got) == memory_format_of(native)
    tolerance = EXACT_FLOAT32 if dtype == torch.float32 else RELATIVE_ERROR[dtype]
    assert relative_error(got, want) < tolerance
    for name, g, e in zip(["input", "weight", "bias"], grads, want_grads):
        assert relative_error(g, e) < tolerance, f"grad of {name}"


@pytest.mark.parametrize("with_indices", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=dtype_name)
@pytest.mark.parametrize("channels", [8, 16, 24])
@pytest.mark.parametrize("pool", [dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=3, stride=2, ceil_mode=True),
                                  dict(kernel_size=3, stride=1, padding=1, dilation=2)], ids=str)
def test_cuda_channels_last_max_pool_is_exact(pool, channels, dtype, with_indices):
    x = torch.randn(2, channels, 13, 11, device="cuda", dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    want, want_indices = F.max_pool2d(x, return_indices=True, **pool)
    if with_indices:
        got, indices = cf.max_pool2d(x, return_indices=True, **pool)
        assert torch.equal(indices, want_indices)
    else:
        got = cf.max_pool2d(x, **pool)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, want)


@pytest.mark.parametrize("with_indices", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=dtype_name)
@pytest.mark.parametrize("shape", [(2, 3, 16, 24), (1, 5, 8, 8), (3, 2, 6, 40)], ids=str)
def test_cuda_nchw_2x2_pool_in_vectors_is_exact(shape, dtype, with_indices):
    # 2x2 windows with stride 2 that halve the plane, a multiple of 4 outputs a row: the
    # NCHW vector kernel. Values from a small set make ties; NaN and infinities fill single
    # elements and whole windows.
    x = torch.randint(-3, 3, shape, device="cuda").to(dtype)
    x[0, 0, 0, 1] = float("nan")
    x[0, 0, 2:4, 4:6] = float("nan")
    x[0, -1, 1, 3] = float("inf")
    x[-1, -1, 0:2, 0:2] = float("-inf")
    x[-1, 0, 2, 0:8:3] = float("nan")
    want, want_indices = F.max_pool2d(x, 2, return_indices=True)
    if with_indices:
        got, indices = cf.max_pool2d(x, 2, return_indices=True)
        assert torch.equal(indices, want_indices)
    else:
        got = cf.max_pool2d(x, 2)
    assert got.is_contiguous()
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


def _fast_path_calls(dtype=torch.float16):
    x = torch.randn(2, 16, 12, 12, device="cuda", dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(32, 16, 3, 3, device="cuda", dtype=dtype)
    dw = torch.randn(16, 1, 3, 3, device="cuda", dtype=dtype)
    calls = [lambda: cf.conv2d(x, w, padding=1), lambda: cf.depthwise_conv2d(x, dw, padding=1),
             lambda: cf.depthwise_conv2d(x.contiguous(), dw, stride=2),
             lambda: cf.max_pool2d(x, 2), lambda: cf.max_pool2d(x.contiguous(), 3, 2)]
    return x, calls


def test_cuda_graph_capture_and_replay():
    x, calls = _fast_path_calls()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for call in calls:  # warm-up outside the capture, as CUDA graphs require
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = [call() for call in calls]
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    for out, call in zip(outputs, calls):
        assert torch.equal(out, call())


def test_cuda_runs_on_the_current_stream():
    x, calls = _fast_path_calls()
    eager = [call() for call in calls]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(10_000_000)  # a busy stream: work on another one would race ahead
        on_side = [call() for call in calls]
    torch.cuda.current_stream().wait_stream(side)
    for a, b in zip(eager, on_side):
        assert torch.equal(a, b)


@pytest.mark.skipif(not HAS_CUDA or torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_tensors_on_a_second_device():
    with torch.cuda.device(1):
        x, calls = _fast_path_calls()
    for call in calls:
        out = call()
        assert out.device == torch.device("cuda", 1)


def test_cuda_depthwise_weight_past_two_to_the_31():
    # A 31x31 window over 2 channels with multiplier 1,117,319: the weight passes 2^31
    # elements while the input, the output and the row kernel's thread count stay small,
    # so only the weight's offset can wrap. The window covers the whole input, so output
    # k is the dot product of weight k with its input plane.
    multiplier, taps = 1_117_319, 31 * 31
    x = torch.randn(1, 2, 31, 31, device="cuda", dtype=torch.float16)
    w = torch.randn(2 * multiplier, 1, 31, 31, device="cuda", dtype=torch.float16)
    assert w.numel() > 2**31
    out = cf.conv2d(x, w, groups=2).view(2, multiplier)
    for group in range(2):
        want = w[group * multiplier:(group + 1) * multiplier].view(multiplier, taps).float() @ \
            x[0, group].reshape(taps).float()
        assert relative_error(out[group], want) < RELATIVE_ERROR[torch.float16]
    del x, w, out
    torch.cuda.empty_cache()


def test_cuda_max_pool_indexes_past_two_to_the_31():
    # Over 2^31 half elements, NCHW (strided kernel) and channels_last with 8 channels
    # (vector kernel): offsets past 2^31 must not wrap.
    for shape, to_nchw_view in [((1, 2, 32768, 32770), lambda t: t),
                                ((1, 16384, 16385, 8), lambda t: t.permute(0, 3, 1, 2))]:
        x = to_nchw_view(torch.randn(shape, device="cuda", dtype=torch.float16))
        assert x.numel() > 2**31
        assert torch.equal(cf.max_pool2d(x, 2), F.max_pool2d(x, 2))
        del x
        torch.cuda.empty_cache()
