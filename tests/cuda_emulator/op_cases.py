"""The ops of the emulated op library (see build): CPU tensors through the op layer and the
CUDA backend's host code (kernel choice, layouts, padded channels, stride phases, split
scratch, alignment copies) to the emulated CUDA kernels, against float64 references.

Run in a process of its own (the library registers the classic_ops ops, which a process
with classic_ops imported has already), from the tests directory:
    python -m cuda_emulator.op_cases LIBRARY RESULTS_JSON
writes {case name: "ok" or what went wrong}. CASES names them for the tests."""
import ctypes
import json
import os
import sys
import traceback

import torch
import torch.nn.functional as F

from .references import (TF32_UNIT, UNIT, assert_close, assert_conv_gradients,
                         assert_max_pool_grad_input)

# (name, op, dtype, layout, batch, in_channels, height, width, out_channels, kernel, stride,
#  padding, dilation, groups, bias, relu); dtype "tf32" is float32 with TF32 allowed, and
#  layout "unaligned" a channels_last input whose data starts 2 bytes past 16-byte alignment.
CONV_CASES = [
    ("gemm_fused_relu", "conv2d", "float16", "cl", 2, 16, 8, 8, 24, 3, 1, 1, 1, 1, True, True),
    ("gemm_nchw_strided", "conv2d", "bfloat16", "nchw", 2, 16, 9, 9, 16, 3, 2, 1, 1, 1, True,
     False),
    ("gemm_padded_channels", "conv2d", "float16", "cl", 1, 3, 10, 10, 16, 3, 1, 1, 1, 1, True,
     False),
    ("gemm_padded_channels_strided", "conv2d", "float16", "cl", 2, 3, 11, 11, 16, 5, 2, 2, 1, 1,
     False, False),
    ("gemm_strided_dilated", "conv2d", "bfloat16", "cl", 2, 16, 9, 9, 10, 3, 2, 2, 2, 1, True,
     True),
    ("gemm_pointwise", "pointwise_conv2d", "float16", "cl", 2, 32, 7, 7, 72, 1, 1, 0, 1, 1, True,
     False),
    ("gemm_pointwise_strided", "pointwise_conv2d", "bfloat16", "cl", 2, 32, 8, 8, 40, 1, 2, 0, 1,
     1, False, False),
    ("gemm_tf32", "conv2d", "tf32", "cl", 2, 8, 8, 8, 16, 3, 1, 1, 1, 1, True, False),
    ("gemm_tf32_wide", "conv2d", "tf32", "cl", 2, 8, 7, 7, 72, 3, 2, 1, 1, 1, True, False),
    ("gemm_split_tall_tile", "conv2d", "float16", "cl", 1, 64, 4, 4, 64, 3, 1, 1, 1, 1, True,
     True),
    ("gemm_split_square_tile", "conv2d", "bfloat16", "cl", 1, 128, 3, 3, 136, 3, 1, 1, 1, 1,
     True, False),
    # grad_input's stride phases, each a GEMM split over blocks, written in place
    ("gemm_split_strided_grad_input", "conv2d", "float16", "cl", 1, 16, 8, 8, 128, 3, 2, 1, 1, 1,
     True, False),
    ("gemm_unaligned_input", "conv2d", "float16", "unaligned", 2, 16, 6, 6, 16, 3, 1, 1, 1, 1,
     True, False),
    ("gemm_wide", "conv2d", "float16", "cl", 2, 16, 9, 9, 96, 3, 1, 1, 1, 1, True, True),
    ("direct_float32", "conv2d", "float32", "cl", 2, 8, 6, 6, 8, 3, 1, 1, 1, 1, True, False),
    ("direct_grouped_float64", "conv2d", "float64", "nchw", 2, 6, 7, 7, 9, 3, 2, 1, 1, 3, True,
     False),
    ("depthwise_rows", "depthwise_conv2d", "float32", "nchw", 2, 8, 10, 10, 8, 3, 1, 1, 1, 8,
     True, False),
    ("depthwise_rows_strided", "depthwise_conv2d", "bfloat16", "nchw", 2, 16, 11, 10, 16, 3, 2,
     1, 1, 16, False, False),
    ("depthwise_vectors", "depthwise_conv2d", "bfloat16", "cl", 2, 16, 9, 9, 16, 3, 2, 1, 1, 16,
     True, False),
    ("depthwise_vectors_stride1", "depthwise_conv2d", "float16", "cl", 2, 16, 10, 9, 16, 3, 1, 1,
     1, 16, False, False),
    ("depthwise_vectors_wide_padding", "depthwise_conv2d", "float32", "cl", 1, 8, 7, 7, 8, 3, 1,
     3, 1, 8, True, False),
    ("depthwise_tiles", "depthwise_conv2d", "float16", "nchw", 1, 4, 13, 12, 4, 5, 2, 2, 1, 4,
     True, True),
    ("depthwise_sliding", "depthwise_conv2d", "float16", "nchw", 1, 4, 12, 12, 4, 5, 1, 2, 1, 4,
     True, True),
    ("depthwise_vectors_sliding", "depthwise_conv2d", "bfloat16", "cl", 1, 16, 9, 11, 16, 5, 1,
     2, 1, 16, True, False),
    ("depthwise_multiplier", "conv2d", "float32", "nchw", 1, 3, 14, 14, 6, 7, 2, 3, 1, 3, False,
     False),
]

# (name, dtype, layout, batch, channels, height, width, kernel, stride, padding, ceil_mode)
POOL_CASES = [
    ("pool_halving", "float32", "nchw", 2, 3, 8, 16, 2, 2, 0, False),
    ("pool_vectors", "float16", "cl", 2, 16, 9, 9, 3, 2, 1, False),
    ("pool_contiguous_nchw", "bfloat16", "nchw", 2, 3, 9, 9, 3, 2, 1, True),
    ("pool_strided_channels_last", "float64", "cl", 2, 3, 7, 7, 3, 2, 1, False),
]

# Cases run again with the forward GEMM on Hopper's warpgroup MMA (the op library is built
# as for sm_90a and its device is an H200), with 64-byte steps (CLASSIC_OPS_WGMMA=1) as
# "<name>_on_warpgroup_mma" and 128-byte ones (CLASSIC_OPS_WGMMA=128) as
# "<name>_on_warpgroup_mma_128".
ON_WARPGROUP_MMA = ["gemm_wide", "gemm_pointwise", "gemm_split_square_tile", "gemm_tf32_wide"]
WARPGROUP_SETTINGS = {"_on_warpgroup_mma": "1", "_on_warpgroup_mma_128": "128"}

CASES = ([case[0] for case in CONV_CASES + POOL_CASES] +
         [name + suffix for suffix in WARPGROUP_SETTINGS for name in ON_WARPGROUP_MMA])

TORCH_DTYPE = {"float16": torch.float16, "bfloat16": torch.bfloat16, "tf32": torch.float32,
               "float32": torch.float32, "float64": torch.float64}


def laid_out(t, layout):
    if layout == "nchw":
        return t.contiguous()
    cl = t.contiguous(memory_format=torch.channels_last)
    if layout == "cl":
        return cl
    # The same strides, two bytes into a fresh allocation.
    storage = torch.empty(cl.numel() + 8, dtype=t.dtype)
    shifted = storage[1:1 + cl.numel()].as_strided(cl.shape, cl.stride())
    shifted.copy_(cl)
    return shifted


def run_conv(op_name, dtype_name, layout, batch, in_channels, height, width, out_channels, kernel,
             stride, padding, dilation, groups, with_bias, relu):
    dtype = TORCH_DTYPE[dtype_name]
    torch.backends.cudnn.allow_tf32 = dtype_name == "tf32"
    x = laid_out(torch.randn(batch, in_channels, height, width).to(dtype), layout)
    w = torch.randn(out_channels, in_channels // groups, kernel, kernel).to(dtype)
    bias = torch.randn(out_channels).to(dtype) if with_bias else None
    geometry = ([stride] * 2, [padding] * 2, [dilation] * 2)
    op = getattr(torch.ops.classic_ops, op_name)
    if op_name == "conv2d":
        y = op(x, w, bias, *geometry, groups, relu)
    elif op_name == "depthwise_conv2d":
        y = op(x, w, bias, *geometry, relu)
    else:
        y = op(x, w, bias, geometry[0], relu)
    unit = TF32_UNIT if dtype_name == "tf32" else UNIT[dtype]
    xd, wd = x.double(), w.double()
    want = F.conv2d(xd, wd, None if bias is None else bias.double(), stride, padding, dilation,
                    groups)
    magnitude = F.conv2d(xd.abs(), wd.abs(), None if bias is None else bias.double().abs(),
                         stride, padding, dilation, groups)
    assert_close(y, want.relu() if relu else want, magnitude, unit, "forward")
    native_format = F.conv2d(x, w, None, stride, padding, dilation, groups).stride()
    assert y.stride() == native_format, f"forward strides {y.stride()}, native {native_format}"

    dy = torch.randn(y.shape).to(dtype).contiguous(memory_format=torch.channels_last
                                                   if layout != "nchw" else torch.contiguous_format)
    dx = torch.ops.classic_ops.conv2d_grad_input(dy, x, w, *geometry, groups)
    dw = torch.ops.classic_ops.conv2d_grad_weight(dy, x, w, *geometry, groups)
    assert_conv_gradients(dx, dw, x, w, dy, stride, padding, dilation, groups, unit)


def run_pool(dtype_name, layout, batch, channels, height, width, kernel, stride, padding,
             ceil_mode):
    dtype = TORCH_DTYPE[dtype_name]
    x = laid_out(torch.randn(batch, channels, height, width).to(dtype), layout)
    args = ([kernel] * 2, [stride] * 2, [padding] * 2, [1, 1], ceil_mode)
    want, want_indices = F.max_pool2d(x.double(), *args[:4], ceil_mode=ceil_mode,
                                      return_indices=True)
    y = torch.ops.classic_ops.max_pool2d(x, *args)
    y_indexed, indices = torch.ops.classic_ops.max_pool2d_with_indices(x, *args)
    for name, got in (("inference", y), ("with indices", y_indexed)):
        torch.testing.assert_close(got.double(), want, rtol=0, atol=0, msg=name)
        assert got.stride() == want.stride(), f"{name}: strides {got.stride()}, {want.stride()}"
    torch.testing.assert_close(indices, want_indices, rtol=0, atol=0)
    dy = torch.randn(y.shape).to(dtype).contiguous(memory_format=torch.channels_last
                                                   if layout != "nchw" else torch.contiguous_format)
    dx = torch.ops.classic_ops.max_pool2d_grad_input(dy, x, indices, *args)
    assert_max_pool_grad_input(dx, dy, indices, UNIT[dtype])


def main(library, results_path):
    torch.ops.load_library(library)
    emulator = ctypes.CDLL(library)  # the same library, for its entry points
    results = {}
    runs = [(run_conv, case, "0") for case in CONV_CASES]
    runs += [(run_pool, case, "0") for case in POOL_CASES]
    runs += [(run_conv, (name + suffix, *spec), setting)
             for suffix, setting in WARPGROUP_SETTINGS.items()
             for name, *spec in CONV_CASES if name in ON_WARPGROUP_MMA]
    for run, (name, *spec), setting in runs:
        torch.manual_seed(CASES.index(name))
        emulator.emulated_configure(0, CASES.index(name))  # clears a failed case's error
        os.environ["CLASSIC_OPS_WGMMA"] = setting
        try:
            run(*spec)
            results[name] = "ok"
        except Exception:  # noqa: BLE001  (every failure is the case's result)
            results[name] = traceback.format_exc(limit=-3)
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
