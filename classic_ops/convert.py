"""Swap torch.nn.Conv2d / MaxPool2d layers of any model for classic_ops layers, in place.

classic_ops.nn.Conv2d and MaxPool2d subclass the torch layers and add no state, so a swap
changes only each module's class: parameters, buffers and hooks stay the very same objects.
"""
from dataclasses import dataclass, field

import torch

from . import nn as cnn

# exact torch class -> our class
_SWAPS = {torch.nn.Conv2d: cnn.Conv2d, torch.nn.MaxPool2d: cnn.MaxPool2d}
_REVERSE = {ours: native for native, ours in _SWAPS.items()}
_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


@dataclass
class ConversionReport:
    swapped: list = field(default_factory=list)  # (module name, class name)
    left_native: list = field(default_factory=list)  # (module name, class name, reason)

    def __str__(self):
        lines = [f"swapped {len(self.swapped)} layer(s) to classic_ops, "
                 f"left {len(self.left_native)} native"]
        lines += [f"  swapped  {name or '<root>'}: {kind}" for name, kind in self.swapped]
        lines += [f"  native   {name or '<root>'}: {kind} ({why})" for name, kind, why in self.left_native]
        return "\n".join(lines)


def _reason_to_keep(module):
    """Why a torch conv / pool layer stays native, or None when it can be swapped."""
    if isinstance(module, torch.nn.modules.lazy.LazyModuleMixin):
        return "lazy layer not initialized yet"
    if type(module) not in _SWAPS:
        return "subclass with its own behaviour"
    if isinstance(module, torch.nn.Conv2d):
        if module.weight.dtype not in _SUPPORTED_DTYPES:
            return f"dtype {module.weight.dtype} not supported"
        if module.weight.device.type not in ("cpu", "cuda"):
            return f"device {module.weight.device.type} not supported"
    return None


def convert(model: torch.nn.Module) -> ConversionReport:
    """Replaces every torch.nn.Conv2d and torch.nn.MaxPool2d in `model` (the model itself
    included) by the classic_ops layer, in place, sharing the parameters. Subclasses of the
    torch layers with behaviour of their own are left native and reported."""
    report = ConversionReport()
    for name, module in model.named_modules():
        kind = type(module)
        if not isinstance(module, tuple(_SWAPS)) or kind in _REVERSE:
            continue
        reason = _reason_to_keep(module)
        if reason is None:
            module.__class__ = _SWAPS[kind]
            report.swapped.append((name, kind.__name__))
        else:
            report.left_native.append((name, kind.__name__, reason))
    return report


def revert(model: torch.nn.Module) -> int:
    """Turns every classic_ops layer in `model` back into its torch layer, in place.
    Returns how many layers were reverted."""
    count = 0
    for module in model.modules():
        native = _REVERSE.get(type(module))
        if native is not None:
            module.__class__ = native
            count += 1
    return count
