import torch
from torch import nn

from .. import nn as cnn


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) on 32x32 single-channel images: C1 conv 5x5 -> S2 pool ->
    C3 conv 5x5 -> S4 pool -> C5 (120) -> F6 (84) -> output. The subsampling layers are
    2x2 max-pools and the activations ReLU, the usual modern reading of the original."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            cnn.Conv2d(in_channels, 6, 5), nn.ReLU(inplace=True), cnn.MaxPool2d(2),
            cnn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), cnn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def lenet5(num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    return LeNet5(num_classes, in_channels)
