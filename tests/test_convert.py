"""classic_ops.convert / revert on any model, and training a converted model under DDP."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import classic_ops
from classic_ops import nn as cnn

torchvision = pytest.importorskip("torchvision")

MODELS = {
    "resnet50": (lambda: torchvision.models.resnet50(), 64),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(), 64),
    "googlenet": (lambda: torchvision.models.googlenet(aux_logits=False, init_weights=True), 64),
    "vgg16": (lambda: torchvision.models.vgg16(), 32),
    "alexnet": (lambda: torchvision.models.alexnet(), 64),
}


def _outputs_and_grads(model, x):
    out = model(x)
    grads = torch.autograd.grad(out.square().mean(), [p for p in model.parameters()])
    return out.detach(), grads


@pytest.mark.parametrize("name", sorted(MODELS))
def test_converted_model_gives_the_same_outputs_and_gradients(name):
    build, size = MODELS[name]
    torch.manual_seed(0)
    # Eval mode: with batch statistics over 2 tiny images, BatchNorm would amplify
    # float rounding differences far beyond any tolerance.
    model = build().eval()
    x = torch.randn(2, 3, size, size)
    params_before = [id(p) for p in model.parameters()]
    want_out, want_grads = _outputs_and_grads(model, x)

    native_convs = sum(type(m) is torch.nn.Conv2d for m in model.modules())
    native_pools = sum(type(m) is torch.nn.MaxPool2d for m in model.modules())
    report = classic_ops.convert(model)
    assert len(report.swapped) == native_convs + native_pools > 0
    assert not any(type(m) in (torch.nn.Conv2d, torch.nn.MaxPool2d) for m in model.modules())
    assert [id(p) for p in model.parameters()] == params_before  # shared, not copied

    got_out, got_grads = _outputs_and_grads(model, x)
    torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-4)
    for got, want in zip(got_grads, want_grads):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)

    assert classic_ops.revert(model) == len(report.swapped)
    assert sum(type(m) is torch.nn.Conv2d for m in model.modules()) == native_convs


class MyConv(torch.nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2


def test_report_names_what_stays_native_and_why():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), MyConv(4, 4, 1), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(4, 4, 1, dtype=torch.complex64), torch.nn.LazyConv2d(4, 3))
    report = classic_ops.convert(model)
    assert [name for name, _ in report.swapped] == ["0", "2"]
    reasons = {name: why for name, _, why in report.left_native}
    assert reasons == {"1": "subclass with its own behaviour", "3": "dtype torch.complex64 not supported",
                       "4": "lazy layer not initialized yet"}
    assert "swapped 2 layer(s)" in str(report) and "MyConv" in str(report)
    assert type(model[1]) is MyConv


def test_convert_swaps_the_root_module_too():
    conv = torch.nn.Conv2d(3, 4, 3)
    classic_ops.convert(conv)
    assert type(conv) is cnn.Conv2d


@pytest.mark.skipif(not torch.cuda.is_available() or not classic_ops.built_with_cuda(),
                    reason="needs a GPU and a CUDA build")
def test_converted_model_matches_on_cuda():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().cuda().eval()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    with torch.no_grad():
        want = model(x)
        classic_ops.convert(model)
        torch.testing.assert_close(model(x), want, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------- DDP


def _small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.Conv2d(8, 4, 1),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))


def _batches(steps=4, global_batch=8):
    gen = torch.Generator().manual_seed(42)
    return [(torch.randn(global_batch, 3, 16, 16, generator=gen), torch.randint(0, 5, (global_batch,), generator=gen))
            for _ in range(steps)]


def _train(model, batches, rank=0, world=1):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in batches:
        share = len(x) // world
        x, y = x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _ddp_worker(rank, world, init_file, result_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = _small_model()
        classic_ops.convert(model)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        _train(ddp, _batches(), rank, world)
        if rank == 0:
            torch.save(model.state_dict(), result_file)
    finally:
        dist.destroy_process_group()


def test_converted_model_trains_under_ddp_like_a_single_process():
    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "state.pt")
        mp.spawn(_ddp_worker, args=(2, init_file, result_file), nprocs=2, join=True)
        ddp_state = torch.load(result_file)
    single = _small_model()
    classic_ops.convert(single)
    _train(single, _batches())
    for key, want in single.state_dict().items():
        torch.testing.assert_close(ddp_state[key], want, rtol=1e-5, atol=1e-5)
