"""The build: what import reports, and the CMake library loading through torch.ops."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import classic_ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_info_says_what_was_built():
    info = classic_ops.build_info()
    assert ("CPU and CUDA kernels" in info) == classic_ops.built_with_cuda()
    assert f"built against torch {torch.__version__}" in info
    has_cuda_kernels = torch._C._dispatch_has_kernel_for_dispatch_key("classic_ops::conv2d", "CUDA")
    assert has_cuda_kernels == classic_ops.built_with_cuda()


LOAD_AND_RUN = textwrap.dedent("""
    import sys, torch, torch.nn.functional as F
    torch.ops.load_library(sys.argv[1])
    x, w = torch.randn(2, 3, 9, 9, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    out = torch.ops.classic_ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    assert torch.allclose(out, F.conv2d(x, w, padding=1), rtol=1e-12, atol=1e-12)
    pooled = torch.ops.classic_ops.max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], False)
    assert torch.equal(pooled, F.max_pool2d(x, 2))
    print("cmake library ok")
""")


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_library_loads_and_runs(tmp_path):
    build = tmp_path / "build"
    configure = ["cmake", "-S", ROOT, "-B", str(build), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                 "-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    subprocess.run(configure, check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)], check=True,
                   capture_output=True, text=True)
    library = build / "libclassic_ops.so"
    assert library.exists()
    # A fresh interpreter: the namespace can be registered only once per process.
    run = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(library)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "cmake library ok" in run.stdout
