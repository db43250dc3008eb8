import torch
from torch import nn

from .. import nn as cnn

# Output channels of each 3x3 convolution, "M" a 2x2 max-pool (Simonyan & Zisserman, table 1).
CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def make_features(config, batch_norm=False):
    layers, channels = [], 3
    for item in config:
        if item == "M":
            layers.append(cnn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(cnn.Conv2d(channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG: a feature extractor of 3x3 convolutions and 2x2 max-pools, then a classifier."""

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _vgg(name, num_classes, batch_norm):
    return VGG(make_features(CONFIGS[name], batch_norm), num_classes)


def vgg11(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    return _vgg("vgg11", num_classes, batch_norm)


def vgg13(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    return _vgg("vgg13", num_classes, batch_norm)


def vgg16(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    return _vgg("vgg16", num_classes, batch_norm)


def vgg19(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    return _vgg("vgg19", num_classes, batch_norm)


class FullyConvolutionalVGG(nn.Module):
    """VGG with its classifier rewritten as convolutions: FC1 as a 7x7 convolution, FC2 and
    FC3 as 1x1 convolutions, holding the same weights. On 224x224 input the logits equal the
    original's; on larger input the output is a spatial map of class scores."""

    def __init__(self, vgg: VGG):
        super().__init__()
        self.features = vgg.features
        fc1, fc2, fc3 = (m for m in vgg.classifier if isinstance(m, nn.Linear))
        channels = fc1.in_features // 49
        self.classifier = nn.Sequential(
            _linear_as_conv(fc1, channels, 7), nn.ReLU(inplace=True), nn.Dropout(),
            _linear_as_conv(fc2, fc2.in_features, 1), nn.ReLU(inplace=True), nn.Dropout(),
            _linear_as_conv(fc3, fc3.in_features, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.classifier(self.features(x))
        return scores.flatten(1) if scores.shape[-2:] == (1, 1) else scores


def _linear_as_conv(linear: nn.Linear, in_channels: int, kernel: int) -> cnn.Conv2d:
    conv = cnn.Conv2d(in_channels, linear.out_features, kernel).to(linear.weight.dtype)
    with torch.no_grad():
        # Linear's input is the flattened (C, kH, kW) map: its weight rows reshape exactly.
        conv.weight.copy_(linear.weight.view(linear.out_features, in_channels, kernel, kernel))
        conv.bias.copy_(linear.bias)
    return conv


def fully_convolutional_vgg(vgg: VGG) -> FullyConvolutionalVGG:
    return FullyConvolutionalVGG(vgg)
