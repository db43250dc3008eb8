"""Drop-in layers: the constructor arguments, parameters, state_dict keys and padding modes
of torch.nn.Conv2d / torch.nn.MaxPool2d (they subclass them), computed by classic_ops."""
import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from . import functional

__all__ = ["Conv2d", "MaxPool2d"]


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d on classic_ops kernels."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return functional.conv2d(padded, weight, bias, self.stride, _pair(0), self.dilation,
                                     self.groups)
        return functional.conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                                 self.groups)


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on classic_ops kernels."""

    def forward(self, input):
        return functional.max_pool2d(input, self.kernel_size, self.stride, self.padding,
                                     self.dilation, ceil_mode=self.ceil_mode,
                                     return_indices=self.return_indices)
