"""Per-layer summary of a model: output shape, parameters, activation size and
multiply-accumulates, measured by running the model once on a random input."""
from dataclasses import dataclass

import torch


@dataclass
class LayerSummary:
    name: str
    kind: str
    output_shape: tuple
    parameters: int
    activations: int  # output elements per sample
    macs: int  # multiply-accumulates per sample


@dataclass
class ModelSummary:
    layers: list
    total_parameters: int
    total_macs: int
    input_size: tuple

    def table(self) -> str:
        head = f"{'layer':34} {'type':18} {'output':>20} {'params':>13} {'activations':>12} {'MACs':>15}"
        rows = [head, "-" * len(head)]
        for layer in self.layers:
            shape = "x".join(map(str, layer.output_shape))
            rows.append(f"{layer.name:34.34} {layer.kind:18.18} {shape:>20} {layer.parameters:>13,} "
                        f"{layer.activations:>12,} {layer.macs:>15,}")
        rows.append("-" * len(head))
        rows.append(f"{'total':34} {'':18} {'':>20} {self.total_parameters:>13,} {'':>12} "
                    f"{self.total_macs:>15,}")
        return "\n".join(rows)

    def __str__(self):
        return self.table()


def _macs(module, output):
    per_sample = output[0].numel() if output.dim() > 0 else 0
    if isinstance(module, torch.nn.Conv2d):
        kh, kw = module.kernel_size
        return per_sample * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, torch.nn.Linear):
        return per_sample * module.in_features
    return 0


def summary(model: torch.nn.Module, input_size, *, print_table: bool = True) -> ModelSummary:
    """Runs `model` once (in eval mode, without gradients) on a (1, *input_size) input and
    records every leaf module. input_size is (C, H, W). Parameters are counted for every
    parameter of the model, shared ones once."""
    layers, hooks = [], []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                layers.append(LayerSummary(
                    name, type(module).__name__, tuple(output.shape[1:]),
                    sum(p.numel() for p in module.parameters(recurse=False)),
                    output[0].numel(), _macs(module, output)))
        return hook

    for name, module in model.named_modules():
        if not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(record(name)))
    param = next(model.parameters(), None)
    x = torch.randn((1, *input_size), dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    result = ModelSummary(layers, sum(p.numel() for p in model.parameters()),
                          sum(layer.macs for layer in layers), tuple(input_size))
    if print_table:
        print(result.table())
    return result
