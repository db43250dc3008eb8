import torch
from torch import nn

from .. import nn as cnn


class ConvBNAct(nn.Sequential):
    """Convolution without bias, batch norm, activation; module names 0, 1, 2 as in
    torchvision's Conv2dNormActivation."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1,
                 activation=nn.ReLU6):
        super().__init__(
            cnn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                       groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            activation(inplace=True),
        )


class MobileNetV1(nn.Module):
    """MobileNet v1 (Howard et al. 2017): a 3x3 stem, then depthwise-separable blocks (a 3x3
    depthwise convolution filtering each channel alone, then a 1x1 pointwise convolution
    mixing channels)."""

    # (output channels, stride) of each depthwise-separable block
    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
             [(1024, 2), (1024, 1)]

    def __init__(self, num_classes=1000, dropout=0.001):
        super().__init__()
        layers, channels = [ConvBNAct(3, 32, stride=2, activation=nn.ReLU)], 32
        for out_channels, stride in self.BLOCKS:
            layers.append(nn.Sequential(
                ConvBNAct(channels, channels, 3, stride, groups=channels, activation=nn.ReLU),
                ConvBNAct(channels, out_channels, 1, activation=nn.ReLU)))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1024, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; a residual when shapes allow."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers = [ConvBNAct(in_channels, hidden, 1)] if expand_ratio != 1 else []
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
                   cnn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet v2 (Sandler et al. 2018), width 1.0, in torchvision's layout."""

    # expansion t, output channels c, repeats n, first stride s
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes=1000, dropout=0.2):
        super().__init__()
        layers, channels = [ConvBNAct(3, 32, stride=2)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        layers.append(ConvBNAct(channels, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v1(num_classes: int = 1000) -> MobileNetV1:
    return MobileNetV1(num_classes)


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    return MobileNetV2(num_classes)
