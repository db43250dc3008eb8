"""CPU results of 32 MB or more (blocks glibc would map afresh, whose pages the kernel zeroes
on first touch) are kept once freed and handed to the next result of the same size: a
kernel must write every element of a block that still holds what its last user left."""
import gc
import sys

import pytest
import torch
import torch.nn.functional as F

import classic_ops
import classic_ops.functional as cf

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="results go on huge pages on Linux only")

BIG = 32 << 20


@pytest.fixture(autouse=True)
def no_frees_by_the_garbage_collector():
    """Tensors of earlier tests caught in reference cycles, freed by a collection in the
    middle of a test, would change what the cache holds: collected first, none during."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def _conv(channels, out_channels, groups=1, channels_last=False):
    def make():
        torch.manual_seed(1)
        x = torch.randn(1, channels, 130, 132)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(out_channels, channels // groups, 3, 3)
        args = dict(padding=1, groups=groups)
        return (lambda: (cf.conv2d(x, w, **args),)), (lambda: (F.conv2d(x, w, **args),))
    return make


def _pointwise():
    torch.manual_seed(2)
    x = torch.randn(1, 24, 130, 132)
    w = torch.randn(520, 24, 1, 1)
    return (lambda: (cf.pointwise_conv2d(x, w),)), (lambda: (F.conv2d(x, w),))


def _max_pool_with_indices():
    torch.manual_seed(3)
    x = torch.randn(1, 520, 260, 264)
    return (lambda: cf.max_pool2d(x, 2, return_indices=True)), (lambda: F.max_pool2d(x, 2, return_indices=True))


def _grad_input():
    torch.manual_seed(4)
    x = torch.randn(1, 520, 130, 132)
    w = torch.randn(16, 520, 3, 3)
    grad = torch.randn(1, 16, 130, 132)
    args = ([1, 1], [1, 1], [1, 1], 1)
    return ((lambda: (torch.ops.classic_ops.conv2d_grad_input(grad, x, w, *args),)),
            (lambda: (torch.nn.grad.conv2d_input(x.shape, w, grad, padding=1),)))


CASES = {
    "conv2d_nchw_planar": _conv(3, 520),  # few input channels
    "conv2d_nchw": _conv(16, 520),
    "conv2d_channels_last": _conv(16, 520, channels_last=True),
    "depthwise": _conv(520, 520, groups=520),
    "pointwise": _pointwise,
    "max_pool2d_with_indices": _max_pool_with_indices,
    "conv2d_grad_input": _grad_input,
}


@pytest.mark.parametrize("case", CASES)
def test_kept_blocks_are_reused_and_fully_overwritten(case, monkeypatch):
    # NaN left in each freed result, which then serves the same call again (the same blocks),
    # as it would without the test fixture that fills uninitialized memory.
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", False)
    ours, native = CASES[case]()
    classic_ops.empty_cpu_cache()
    first = ours()
    assert all(t.nbytes >= BIG for t in first)
    blocks = {t.data_ptr() for t in first}
    for t in first:
        t.fill_(float("nan") if t.is_floating_point() else -1)
    del t, first
    assert classic_ops.cpu_cache_bytes() >= BIG * len(blocks)
    second = ours()
    assert {t.data_ptr() for t in second} == blocks
    for got, want in zip(second, native()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_cache_keeps_freed_blocks_until_emptied():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 130, 132)
    w = torch.randn(520, 3, 3, 3)
    classic_ops.empty_cpu_cache()
    assert classic_ops.cpu_cache_bytes() == 0
    y = cf.conv2d(x, w, padding=1)
    assert classic_ops.cpu_cache_bytes() == 0
    size = y.nbytes
    del y
    kept = classic_ops.cpu_cache_bytes()
    assert size <= kept < size + (2 << 20)  # in whole 2 MB pages
    small = cf.conv2d(x, w[:8], padding=1)  # under 32 MB: glibc's, never kept
    del small
    assert classic_ops.cpu_cache_bytes() == kept
    assert classic_ops.empty_cpu_cache() == kept
    assert classic_ops.cpu_cache_bytes() == 0 and classic_ops.empty_cpu_cache() == 0


def _result_of(floats):
    """A result of ours of `floats` floats (a 1x1 max-pool, which copies its input)."""
    return cf.max_pool2d(torch.randn(1, floats >> 10, 32, 32), 1)


def test_cache_holds_at_most_its_limit():
    # 1 GB unless set; freed blocks of distinct sizes go, least recently freed first, once
    # the blocks kept would exceed the limit; a lower limit releases at once, 0 keeps none.
    previous = classic_ops.set_cpu_cache_limit(100 << 20)
    try:
        assert previous == 1 << 30
        classic_ops.empty_cpu_cache()
        kept = []
        for i in range(5):
            y = _result_of((9 + i) << 20)  # 36, 40, ... 52 MB
            kept.insert(0, y.nbytes)
            del y
            while sum(kept) > 100 << 20:
                kept.pop()
            assert classic_ops.cpu_cache_bytes() == sum(kept)
        assert len(kept) == 2
        assert classic_ops.set_cpu_cache_limit(60 << 20) == 100 << 20  # keeps the last freed only
        assert classic_ops.cpu_cache_bytes() == kept[0]
        classic_ops.set_cpu_cache_limit(0)
        assert classic_ops.cpu_cache_bytes() == 0
        y = _result_of(9 << 20)
        del y
        assert classic_ops.cpu_cache_bytes() == 0
    finally:
        classic_ops.set_cpu_cache_limit(previous)


def test_cache_limit_must_be_a_byte_count():
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        classic_ops.set_cpu_cache_limit(-1)
    for bad in (1.5, "1GB", None):
        with pytest.raises(TypeError, match="max_bytes must be an int"):
            classic_ops.set_cpu_cache_limit(bad)
