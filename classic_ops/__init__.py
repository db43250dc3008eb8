"""classic_ops: hand-written CPU and CUDA kernels for the operators of the classic CNNs.

The ops live in ``torch.ops.classic_ops``; ``classic_ops.functional`` and
``classic_ops.nn`` are drop-in replacements for their ``torch.nn`` counterparts.
"""
import torch  # noqa: F401  (the extension links against torch's libraries)

from . import _C  # noqa: F401  (loading the library registers the ops)
from . import _registrations  # noqa: F401  (fake kernels and autograd)
from . import functional, nn
from ._build import build_info, built_with_cuda

__version__ = "0.1.0"
__all__ = ["functional", "nn", "build_info", "built_with_cuda", "__version__"]
