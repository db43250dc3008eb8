"""The classic networks: torchvision compatibility, the seed's figures, VGG as a fully
convolutional network, FLOP counting."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import classic_ops
from classic_ops import models
from classic_ops import nn as cnn

torchvision = pytest.importorskip("torchvision")

# Small inputs keep the suite fast: every network here ends in adaptive pooling.
TORCHVISION_PAIRS = {
    "alexnet": (models.alexnet, torchvision.models.alexnet, 96),
    "vgg11": (models.vgg11, torchvision.models.vgg11, 64),
    "vgg13": (models.vgg13, torchvision.models.vgg13, 64),
    "vgg16": (models.vgg16, torchvision.models.vgg16, 64),
    "vgg19": (models.vgg19, torchvision.models.vgg19, 64),
    "resnet18": (models.resnet18, torchvision.models.resnet18, 96),
    "resnet34": (models.resnet34, torchvision.models.resnet34, 64),
    "resnet50": (models.resnet50, torchvision.models.resnet50, 96),
    "googlenet": (models.googlenet, lambda: torchvision.models.googlenet(aux_logits=True, init_weights=True), 96),
    "mobilenet_v2": (models.mobilenet_v2, torchvision.models.mobilenet_v2, 96),
}


def randomize_batch_norm(model, seed=0):
    """Running statistics that are not 0/1, so eval-mode BatchNorm does real work."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PAIRS))
def test_loads_torchvision_state_dict_and_matches_in_eval(name):
    ours_fn, theirs_fn, size = TORCHVISION_PAIRS[name]
    torch.manual_seed(0)
    theirs = theirs_fn().eval()
    randomize_batch_norm(theirs)
    ours = ours_fn().eval()
    ours.load_state_dict(theirs.state_dict())  # strict: same keys and shapes
    convs = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in ours.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert convs and all(type(m) is cnn.Conv2d for m in convs)
    assert all(type(m) is cnn.MaxPool2d for m in pools)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        # float32 through up to 50 layers, summed in another order than oneDNN's
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-3, atol=1e-3)


VGG16_CONV_WEIGHTS = [1_728, 36_864, 73_728, 147_456, 294_912, 589_824, 589_824, 1_179_648,
                      2_359_296, 2_359_296, 2_359_296, 2_359_296, 2_359_296]


def test_vgg16_summary_reproduces_the_seed_figures(capsys):
    report = classic_ops.summary(models.vgg16(), (3, 224, 224))
    printed = capsys.readouterr().out
    assert "138,357,544" in printed
    assert report.total_parameters == 138_357_544
    convs = [layer for layer in report.layers if layer.kind == "Conv2d"]
    assert [c.parameters - c.output_shape[0] for c in convs] == VGG16_CONV_WEIGHTS  # weights, no bias
    fcs = [layer for layer in report.layers if layer.kind == "Linear"]
    assert [f.parameters - f.output_shape[0] for f in fcs] == [102_760_448, 16_777_216, 4_096_000]
    assert [f.activations for f in fcs] == [4096, 4096, 1000]
    assert convs[0].output_shape == (64, 224, 224) and convs[0].activations == 224 * 224 * 64
    assert convs[2].activations == 112 * 112 * 128
    pools = [layer for layer in report.layers if layer.kind == "MaxPool2d"]
    assert [p.output_shape for p in pools] == [(64, 112, 112), (128, 56, 56), (256, 28, 28),
                                               (512, 14, 14), (512, 7, 7)]
    assert pools[0].activations == 112 * 112 * 64 and pools[1].activations == 56 * 56 * 128


def test_one_by_one_bottleneck_cost_example():
    direct = cnn.Conv2d(192, 32, 5, padding=2)
    bottleneck = torch.nn.Sequential(cnn.Conv2d(192, 16, 1), cnn.Conv2d(16, 32, 5, padding=2))
    direct_report = classic_ops.summary(direct, (192, 28, 28), print_table=False)
    bottleneck_report = classic_ops.summary(bottleneck, (192, 28, 28), print_table=False)
    assert direct_report.total_macs == 120_422_400
    assert [layer.macs for layer in bottleneck_report.layers] == [2_408_448, 10_035_200]
    assert direct_report.layers[0].output_shape == bottleneck_report.layers[-1].output_shape == (32, 28, 28)


def test_mobilenet_v1_has_the_published_parameter_count():
    assert sum(p.numel() for p in models.mobilenet_v1().parameters()) == 4_231_976


def test_lenet5_shapes():
    report = classic_ops.summary(models.lenet5(), (1, 32, 32), print_table=False)
    shapes = [layer.output_shape for layer in report.layers if layer.kind in ("Conv2d", "MaxPool2d")]
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5)]
    assert report.total_parameters == 61_706


def test_vgg_as_fully_convolutional_network():
    torch.manual_seed(0)
    vgg = models.vgg11().eval()
    fcn = models.fully_convolutional_vgg(vgg).eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        torch.testing.assert_close(fcn(x), vgg(x), rtol=1e-4, atol=1e-4)
        assert fcn(torch.randn(1, 3, 384, 384)).shape == (1, 1000, 6, 6)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_flop_counter_counts_our_ops_like_native(name):
    torch.manual_seed(0)
    ours_fn, theirs_fn, _ = TORCHVISION_PAIRS[name]
    native = theirs_fn()
    ours = ours_fn()
    ours.load_state_dict(native.state_dict())
    x = torch.randn(2, 3, 64, 64)

    def count(model):
        with FlopCounterMode(display=False) as counter:
            model(x).sum().backward()
        return counter.get_total_flops()

    assert count(ours) == count(native) > 0
