"""Builds classic_ops._C from csrc/.

CLASSIC_OPS_CUDA=1 forces a CUDA build, =0 a CPU-only build; unset, CUDA kernels are built
when torch is a CUDA build and nvcc is found. Without a visible GPU and without
TORCH_CUDA_ARCH_LIST, CUDA code is compiled for DEFAULT_CUDA_ARCHS.
"""
import glob
import os
import shutil
import subprocess

from setuptools import find_packages, setup

DEFAULT_CUDA_ARCHS = "8.0;9.0"
ROOT = os.path.dirname(os.path.abspath(__file__))


def find_cuda_home():
    """The toolkit folder of the nvcc on PATH; nvcc may be a wrapper script elsewhere."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    dryrun = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                            capture_output=True, text=True)
    for line in (dryrun.stdout + dryrun.stderr).splitlines():
        if "TOP=" in line:
            return os.path.realpath(line.split("TOP=", 1)[1].strip())
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def wants_cuda(torch, cuda_home):
    switch = os.environ.get("CLASSIC_OPS_CUDA", "").strip()
    if switch == "0":
        return False
    available = torch.version.cuda is not None and cuda_home is not None
    if switch == "1":
        if not available:
            raise RuntimeError("CLASSIC_OPS_CUDA=1, but torch is not a CUDA build "
                               f"(torch.version.cuda={torch.version.cuda}) or nvcc was not found")
        return True
    return available


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def make_extensions():
    cuda_home = find_cuda_home()
    if cuda_home is not None:
        os.environ["CUDA_HOME"] = cuda_home  # before cpp_extension reads it at import
    import torch
    from torch.utils import cpp_extension

    with_cuda = wants_cuda(torch, cuda_home)
    # What import reports (classic_ops.build_info): macro values without shell-special characters.
    # -fopenmp: at::parallel_for is inline OpenMP code, serial unless compiled with it.
    cxx_flags = ["-O3", "-fopenmp", "-fvisibility=hidden",
                 f"-DCLASSIC_OPS_TORCH_VERSION={torch.__version__}"]
    link_flags = ["-fopenmp"]
    files = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    if not with_cuda:
        return [cpp_extension.CppExtension("classic_ops._C", files, extra_compile_args={"cxx": cxx_flags},
                                           extra_link_args=link_flags)], False
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
    archs = ",".join(os.environ.get("TORCH_CUDA_ARCH_LIST", "visible").replace(";", " ").split())
    cxx_flags += ["-DCLASSIC_OPS_WITH_CUDA", f"-DCLASSIC_OPS_CUDA_ARCHS={archs}"]
    if "9.0a" in archs.split(","):
        # Hopper's warpgroup MMA exists in sm_90a images only (csrc/cuda/hardware.cuh); the
        # backend may choose those kernels in such a build.
        cxx_flags.append("-DCLASSIC_OPS_WITH_SM90A")
    files += sources("csrc/cuda/*.cpp") + sources("csrc/cuda/*.cu")
    ext = cpp_extension.CUDAExtension("classic_ops._C", files, extra_link_args=link_flags,
                                      extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]})
    return [ext], True


def main():
    extensions, with_cuda = make_extensions()
    from torch.utils.cpp_extension import BuildExtension

    print(f"classic_ops: building {'CPU and CUDA' if with_cuda else 'CPU-only'} kernels")
    setup(
        packages=find_packages(include=["classic_ops", "classic_ops.*"]),
        ext_modules=extensions,
        cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
    )


if __name__ == "__main__":
    main()
