"""What the loaded extension was built with."""
import torch

from . import _C


def built_with_cuda() -> bool:
    """True when the extension holds CUDA kernels."""
    return bool(_C.with_cuda)


def build_info() -> str:
    """One line saying which kernels this build holds and for which torch it was built."""
    if built_with_cuda():
        kernels = f"CPU and CUDA kernels (CUDA archs {_C.cuda_archs})"
        if not torch.cuda.is_available():
            kernels += "; no GPU visible, CUDA kernels idle"
    else:
        kernels = "CPU kernels only (built without CUDA)"
    return (f"classic_ops: {kernels}; CPU vectors: {cpu_vectors()}; built against torch "
            f"{_C.torch_version}, running torch {torch.__version__}")


def cpu_vectors() -> str:
    """Which vector instructions the CPU kernels run on this machine."""
    if not _C.cpu_has_avx2_fma():
        return "none (portable reference kernels)"
    if _C.cpu_has_avx512():
        return "AVX2/FMA, AVX-512 in the dense and depthwise microkernels"
    return "AVX2/FMA"
