"""What the loaded extension was built with."""
import torch

from . import _C

try:
    from . import _build_config
except ImportError:  # a build made without setup.py (the CMake library has no Python side)
    _build_config = None


def built_with_cuda() -> bool:
    """True when the extension holds CUDA kernels."""
    return bool(_C.with_cuda)


def build_info() -> str:
    """One line saying which kernels this build holds and for which torch it was built."""
    built_for = getattr(_build_config, "TORCH_VERSION", "unknown")
    if built_with_cuda():
        archs = getattr(_build_config, "CUDA_ARCHS", "unknown")
        kernels = f"CPU and CUDA kernels (CUDA archs {archs})"
        if not torch.cuda.is_available():
            kernels += "; no GPU visible, CUDA kernels idle"
    else:
        kernels = "CPU kernels only (built without CUDA)"
    return f"classic_ops: {kernels}; built against torch {built_for}, running torch {torch.__version__}"
