"""How the package's Python calls its ops: the functional API, and the autograd formulas
whose backward calls the backward ops."""
import torch

from . import _C


def call(op, *args):
    """op(*args). Where no gradient can be asked for, the call skips the ops' autograd
    kernel, which is Python (torch.library.register_autograd) and cost about 5 us a call,
    and goes to the dispatcher from C++ (_C.call_below_autograd): torch.ops' own call cost
    another 5 us, and checking requires_grad from Python 0.8. Tensor subclasses, torch
    function modes and torch.compile's tracing take the usual call."""
    if not torch.compiler.is_compiling() and not torch._C._is_torch_function_mode_enabled():
        result = _C.call_below_autograd(op, *args)
        if result is not NotImplemented:
            return result
    return op(*args)
