import contextlib

import pytest
import torch

import classic_ops  # noqa: F401  (registers torch.ops.classic_ops)
from classic_ops import _C

HAS_CUDA = torch.cuda.is_available() and classic_ops.built_with_cuda()

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and a CUDA build")),
]


@pytest.fixture(autouse=True)
def poison_uninitialized_memory():
    """Every torch.empty (ours included) comes back filled with NaN / INT_MAX, so a kernel
    that leaves any output element unwritten fails the comparison."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


@pytest.fixture(autouse=True)
def exact_float32_convolutions():
    """Native CUDA convolutions run float32 as TF32 by default, and so do ours (the same
    switch): comparisons in float32 need both sides exact. Tests of the TF32 path turn it
    back on themselves."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = previous


def forward_and_grads(fn, tensors, grad_out):
    """fn(*leaves) on fresh leaf copies of `tensors` (None stays None), and the gradients of
    each non-None tensor for the output gradient `grad_out`: a tensor, or an int seed that
    draws one of the output's shape, so that two calls get the same one."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]
    out = fn(*leaves)
    if isinstance(grad_out, int):
        gen = torch.Generator(device=out.device).manual_seed(grad_out)
        grad_out = torch.randn(out.shape, dtype=out.dtype, device=out.device, generator=gen)
    out.backward(grad_out)
    return out, [t.grad for t in leaves if t is not None]


@contextlib.contextmanager
def num_threads(threads):
    """torch's intra-op thread count set to `threads` inside, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def memory_format_of(t):
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def tolerances(dtype):
    return {
        torch.float64: dict(rtol=1e-12, atol=1e-11),
        torch.float32: dict(rtol=1e-4, atol=1e-4),
        torch.bfloat16: dict(rtol=2e-2, atol=5e-2),
        torch.float16: dict(rtol=2e-3, atol=5e-3),
    }[dtype]


@pytest.fixture(params=["dispatch", *(["avx2"] if _C.cpu_has_avx512() else []), "reference"])
def cpu_path(request):
    """Runs a test with the CPU kernels the dispatcher picks (AVX2/FMA where the CPU has
    them, the AVX-512 microkernels where it has those), again on AVX2
    alone where the CPU has AVX-512, and with the portable reference kernels forced."""
    _C.set_avx2_enabled(request.param != "reference")
    _C.set_avx512_enabled(request.param == "dispatch")
    yield request.param
    _C.set_avx2_enabled(True)
    _C.set_avx512_enabled(True)
