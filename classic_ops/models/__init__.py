"""The classic networks, built on classic_ops layers: every convolution and max-pool is a
classic_ops.nn layer; BatchNorm, ReLU, Linear and adaptive average pooling stay native.
Where torchvision has the network, module names follow it, so torchvision's state_dict
loads unchanged."""
from .alexnet import alexnet
from .googlenet import googlenet
from .lenet import lenet5
from .mobilenet import mobilenet_v1, mobilenet_v2
from .resnet import resnet18, resnet34, resnet50
from .vgg import fully_convolutional_vgg, vgg11, vgg13, vgg16, vgg19

__all__ = ["lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "fully_convolutional_vgg",
           "resnet18", "resnet34", "resnet50", "googlenet", "mobilenet_v1", "mobilenet_v2"]
