"""A model using every op compiles with torch.compile(fullgraph=True) and matches eager."""
import torch

import classic_ops.functional as cf
from classic_ops import nn as cnn


class EveryOp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cnn.Conv2d(3, 8, 3, padding=1)
        self.pool = cnn.MaxPool2d(3, stride=2, padding=1)
        self.depthwise = torch.nn.Parameter(torch.randn(16, 1, 3, 3) * 0.3)
        self.pointwise = torch.nn.Parameter(torch.randn(6, 16, 1, 1) * 0.3)
        self.head = cnn.Conv2d(6, 4, 2, stride=2)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.pool(x)
        x = cf.depthwise_conv2d(x, self.depthwise, padding=1)
        x = cf.pointwise_conv2d(torch.relu(x), self.pointwise)
        x, _ = cf.max_pool2d(x, 2, return_indices=True)
        return self.head(x)


def test_compiled_model_matches_eager_forward_and_backward():
    torch.manual_seed(0)
    model = EveryOp()
    x = torch.randn(2, 3, 17, 17)
    compiled = torch.compile(model, fullgraph=True)
    eager_out = model(x)
    compiled_out = compiled(x)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)

    eager_grads = torch.autograd.grad(eager_out.square().sum(), list(model.parameters()))
    compiled_grads = torch.autograd.grad(compiled(x).square().sum(), list(model.parameters()))
    for got, want in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_export_traces_every_op():
    model = EveryOp().eval()
    exported = torch.export.export(model, (torch.randn(1, 3, 17, 17),))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    for op in ("conv2d", "depthwise_conv2d", "pointwise_conv2d", "max_pool2d_with_indices"):
        assert f"classic_ops.{op}.default" in targets
