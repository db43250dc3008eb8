import torch
from torch import nn

from .. import nn as cnn


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky et al. 2012) in torchvision's single-GPU layout."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            cnn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), cnn.MaxPool2d(3, 2),
            cnn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), cnn.MaxPool2d(3, 2),
            cnn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            cnn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            cnn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), cnn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def alexnet(num_classes: int = 1000) -> AlexNet:
    return AlexNet(num_classes)
