"""classic_ops: hand-written CPU and CUDA kernels for the operators of the classic CNNs.

The ops live in ``torch.ops.classic_ops``; ``classic_ops.functional`` and
``classic_ops.nn`` are drop-in replacements for their ``torch.nn`` counterparts,
``classic_ops.models`` builds the classic networks on them and ``classic_ops.convert``
swaps them into any model.
"""
import torch  # noqa: F401  (the extension links against torch's libraries)

from . import _C  # noqa: F401  (loading the library registers the ops)
from ._C import cpu_cache_bytes, empty_cpu_cache, set_cpu_cache_limit
from . import _registrations  # noqa: F401  (fake kernels, autograd, FLOP formulas)
from . import functional, nn
from ._build import build_info, built_with_cuda
from .convert import ConversionReport, convert, revert
from .summary import ModelSummary, summary
from . import models  # noqa: E402  (needs nn)

__version__ = "0.1.0"
__all__ = ["functional", "nn", "models", "convert", "revert", "ConversionReport", "summary",
           "ModelSummary", "build_info", "built_with_cuda", "cpu_cache_bytes", "empty_cpu_cache",
           "set_cpu_cache_limit", "__version__"]
