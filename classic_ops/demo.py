"""Runs every op against native PyTorch on a few layers of the classic networks and prints
the largest difference and the time of each (median of torch.utils.benchmark runs)."""
import torch
import torch.nn.functional as F
from torch.utils import benchmark

from . import functional as cf

# (label, ours, native, input shape, weight shape or None); shapes are real layers at batch 1.
CASES = [
    ("conv2d 3x3 VGG-16 conv3_1", lambda x, w: cf.conv2d(x, w, padding=1),
     lambda x, w: F.conv2d(x, w, padding=1), (1, 128, 56, 56), (256, 128, 3, 3)),
    ("conv2d 5x5 LeNet-5 C3", cf.conv2d, F.conv2d, (1, 6, 14, 14), (16, 6, 5, 5)),
    ("conv2d 11x11/4 AlexNet conv1", lambda x, w: cf.conv2d(x, w, stride=4, padding=2),
     lambda x, w: F.conv2d(x, w, stride=4, padding=2), (1, 3, 224, 224), (64, 3, 11, 11)),
    ("depthwise 3x3 MobileNet", lambda x, w: cf.depthwise_conv2d(x, w, padding=1),
     lambda x, w: F.conv2d(x, w, padding=1, groups=x.shape[1]), (1, 128, 56, 56), (128, 1, 3, 3)),
    ("pointwise 1x1 ResNet-50", cf.pointwise_conv2d, F.conv2d, (1, 256, 56, 56), (64, 256, 1, 1)),
    ("max_pool2d 2x2/2 VGG-16", lambda x, _: cf.max_pool2d(x, 2),
     lambda x, _: F.max_pool2d(x, 2), (1, 64, 224, 224), None),
    ("max_pool2d 3x3/2 ResNet", lambda x, _: cf.max_pool2d(x, 3, 2, 1),
     lambda x, _: F.max_pool2d(x, 3, 2, 1), (1, 64, 112, 112), None),
]


def _median_ms(fn, x, w):
    timer = benchmark.Timer(stmt="fn(x, w)", globals={"fn": fn, "x": x, "w": w})
    return timer.blocked_autorange(min_run_time=0.3).median * 1e3


def run(device="cpu", file=None):
    torch.manual_seed(0)
    rows = []
    for label, ours, native, x_shape, w_shape in CASES:
        x = torch.randn(x_shape, device=device)
        w = torch.randn(w_shape, device=device) * 0.1 if w_shape else None
        with torch.no_grad():
            reference = native(x.double(), w.double() if w is not None else None)
            error = (ours(x, w).double() - reference).abs().max().item()
            native_error = (native(x, w).double() - reference).abs().max().item()
            ours_ms, native_ms = _median_ms(ours, x, w), _median_ms(native, x, w)
        rows.append((label, error, native_error, ours_ms, native_ms))

    header = f"{'op / layer':30} {'max err':>9} {'native err':>10} {'ours ms':>9} {'native ms':>9} {'speedup':>8}"
    print(f"classic_ops vs native PyTorch on {device}, float32, errors against a float64 reference",
          file=file)
    print(header, file=file)
    print("-" * len(header), file=file)
    for label, error, native_error, ours_ms, native_ms in rows:
        print(f"{label:30} {error:9.1e} {native_error:10.1e} {ours_ms:9.3f} {native_ms:9.3f} "
              f"{native_ms / ours_ms:7.2f}x", file=file)
    return rows
