"""The build: what import reports, and the CMake library loading through torch.ops."""
import glob
import importlib.util
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
    assert ("AVX-512" in info) == classic_ops._C.cpu_has_avx512()
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
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key("classic_ops::conv2d", "CUDA")
    assert has_cuda == (sys.argv[2] == "cuda"), has_cuda
    print("cmake library ok")
""")


def _cuda_configure_args():
    """With a CUDA build of torch, the CMake build includes the CUDA kernels. torch's CMake
    config looks for a full toolkit; nvrtc may live only in the pip-installed CUDA wheels."""
    spec = importlib.util.spec_from_file_location("classic_ops_setup", os.path.join(ROOT, "setup.py"))
    setup_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_module)
    cuda_home = setup_module.find_cuda_home()
    args = ["-DCLASSIC_OPS_WITH_CUDA=ON", f"-DCUDA_TOOLKIT_ROOT_DIR={cuda_home}",
            f"-DCMAKE_CUDA_COMPILER={os.path.join(cuda_home, 'bin', 'nvcc')}"]
    site = os.path.dirname(os.path.dirname(torch.__file__))
    nvrtc = sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "libnvrtc.so*")) +
                   glob.glob(os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
    nvrtc = [p for p in nvrtc if "builtins" not in p and ".alt." not in p]
    if nvrtc and not glob.glob(os.path.join(cuda_home, "lib64", "libnvrtc.so*")):
        args.append(f"-DCUDA_nvrtc_LIBRARY={nvrtc[0]}")
    return args


def _tool(name):
    """The environment's own tool first (pip's cmake knows nvcc 13's C++20 flags), then PATH."""
    return shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)


@pytest.mark.skipif(_tool("cmake") is None, reason="cmake not installed")
def test_cmake_library_loads_and_runs(tmp_path):
    build = tmp_path / "build"
    configure = [_tool("cmake"), "-S", ROOT, "-B", str(build), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                 "-DCMAKE_BUILD_TYPE=Release"]
    if _tool("ninja"):
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}"]
    with_cuda = torch.version.cuda is not None and classic_ops.built_with_cuda()
    env = dict(os.environ)
    if with_cuda:
        configure += _cuda_configure_args()
        if not torch.cuda.is_available():
            env.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    for command in (configure, [_tool("cmake"), "--build", str(build), "-j", str(os.cpu_count() or 2)]):
        step = subprocess.run(command, capture_output=True, text=True, env=env)
        assert step.returncode == 0, step.stdout[-3000:] + step.stderr[-3000:]
    library = build / "libclassic_ops.so"
    assert library.exists()
    # A fresh interpreter: the namespace can be registered only once per process.
    run = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(library), "cuda" if with_cuda else "cpu"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "cmake library ok" in run.stdout
