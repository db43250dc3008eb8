"""Kernel microbenchmarks: the convolution and pooling layers of the classic networks, ours
against PyTorch's native ops, timed in the same process, alternating, with
torch.utils.benchmark (median).

    python -m classic_ops.bench --suite quick
    python -m classic_ops.bench --suite vgg16 resnet50 --batch 8 --pass forward --json out.json

On a GPU, --graph times CUDA graphs of GRAPH_CALLS calls on each side instead: the GPU's
time per call, without the host's cost of each launch, which small layers' wall-clock
times measure instead of their kernels.
"""
import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import classic_ops
from classic_ops import _C, models
from classic_ops import functional as cf
from classic_ops import nn as cnn

ops = torch.ops.classic_ops
aten = torch.ops.aten

NETWORKS = {  # name -> (builder, input size C, H, W)
    "lenet5": (models.lenet5, (1, 32, 32)),
    "alexnet": (models.alexnet, (3, 224, 224)),
    "vgg16": (models.vgg16, (3, 224, 224)),
    "resnet18": (models.resnet18, (3, 224, 224)),
    "resnet50": (models.resnet50, (3, 224, 224)),
    "googlenet": (lambda: models.googlenet(aux_logits=False), (3, 224, 224)),
    "mobilenet_v1": (models.mobilenet_v1, (3, 224, 224)),
    "mobilenet_v2": (models.mobilenet_v2, (3, 224, 224)),
}
OPERATORS = ("conv2d", "depthwise", "pointwise", "max_pool2d")


@dataclass(frozen=True)
class Layer:
    network: str
    name: str
    operator: str  # one of OPERATORS
    input_shape: tuple  # (C, H, W)
    weight_shape: tuple  # () for pooling
    kernel_size: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    ceil_mode: bool
    count: int  # how many layers of the network share this configuration

    def describe(self):
        c, h, w = self.input_shape
        if self.operator == "max_pool2d":
            return f"{c}x{h}x{w} k{self.kernel_size[0]}s{self.stride[0]}"
        k = self.weight_shape[0]
        return f"{c}x{h}x{w}->{k} k{self.kernel_size[0]}s{self.stride[0]}"

    def macs(self, batch):
        if self.operator == "max_pool2d":
            return 0
        k, cpg, r, s = self.weight_shape
        out_h, out_w = self.output_hw()
        return batch * k * out_h * out_w * cpg * r * s

    def output_hw(self):
        from ._registrations import _conv_output_size, _pool_output_size

        _, h, w = self.input_shape
        if self.operator == "max_pool2d":
            return tuple(_pool_output_size(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in
                         zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation))
        return tuple(_conv_output_size(n, k, s, p, d) for n, k, s, p, d in
                     zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation))


def _operator_of(module):
    if isinstance(module, torch.nn.MaxPool2d):
        return "max_pool2d"
    if module.groups == module.in_channels and module.groups > 1:
        return "depthwise"
    if module.kernel_size == (1, 1) and module.groups == 1 and module.padding == (0, 0):
        return "pointwise"
    return "conv2d"


def network_layers(network):
    """The distinct convolution and max-pool configurations of a network, in order, found by
    running the model on the meta device (shapes only, no arithmetic)."""
    build, input_size = NETWORKS[network]
    model = build().to("meta").eval()
    seen, hooks = {}, []

    def record(name):
        def hook(module, inputs, output):
            op = _operator_of(module)
            pair = torch.nn.modules.utils._pair
            if op == "max_pool2d":
                config = dict(weight_shape=(), kernel_size=pair(module.kernel_size),
                              stride=pair(module.stride or module.kernel_size), padding=pair(module.padding),
                              dilation=pair(module.dilation), groups=1, ceil_mode=module.ceil_mode)
            else:
                config = dict(weight_shape=tuple(module.weight.shape), kernel_size=module.kernel_size,
                              stride=module.stride, padding=module.padding, dilation=module.dilation,
                              groups=module.groups, ceil_mode=False)
            key = (op, tuple(inputs[0].shape[1:]), tuple(sorted(config.items())))
            if key in seen:
                seen[key]["count"] += 1
            else:
                seen[key] = dict(network=network, name=name, operator=op,
                                 input_shape=tuple(inputs[0].shape[1:]), count=1, **config)
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (cnn.Conv2d, cnn.MaxPool2d)):
            hooks.append(module.register_forward_hook(record(name)))
    with torch.no_grad():
        model(torch.empty((1, *input_size), device="meta"))
    return [Layer(**fields) for fields in seen.values()]


def quick_layers():
    """One or two representative layers per operator: runs in well under a minute."""
    picks = {"vgg16": ["features.10"], "resnet50": ["layer1.0.conv1", "layer2.0.conv2"],
             "mobilenet_v2": ["features.2.conv.1.0"], "alexnet": ["features.0"],
             "lenet5": ["features.3"]}
    layers = []
    for network, names in picks.items():
        layers += [layer for layer in network_layers(network) if layer.name in names]
    vgg_pool = [layer for layer in network_layers("vgg16") if layer.operator == "max_pool2d"][1]
    resnet_pool = [layer for layer in network_layers("resnet50") if layer.operator == "max_pool2d"][0]
    return layers + [vgg_pool, resnet_pool]


def with_depthwise_kernel(layer, size):
    """A depthwise layer with its window widened (or narrowed) to size x size, padded to keep
    its output size: the MobileNet layers at the larger windows that later networks use
    (7x7 in ConvNeXt, up to 31x31 in RepLKNet). Other layers are returned as they are."""
    if layer.operator != "depthwise":
        return layer
    pad = tuple(d * (size - 1) // 2 for d in layer.dilation)
    return replace(layer, weight_shape=(*layer.weight_shape[:2], size, size), kernel_size=(size, size),
                   padding=pad)


# ---------------------------------------------------------------- what is timed


def _pair_of_calls(layer, batch, dtype, device, memory_format, pass_):
    """(ours, native, flops or None, bytes or None) for one layer and pass. Forward passes
    call the functional APIs on both sides (classic_ops.functional, torch.nn.functional),
    as users do; backward passes the backward ops on both sides."""
    gen = torch.Generator(device=device).manual_seed(0)  # on the device: CPU randn of GPU-sized inputs is slow
    x = torch.randn((batch, *layer.input_shape), generator=gen, dtype=torch.float32, device=device).to(dtype)
    x = x.contiguous(memory_format=memory_format)
    if layer.operator == "max_pool2d":
        args = (list(layer.kernel_size), list(layer.stride), list(layer.padding), list(layer.dilation),
                layer.ceil_mode)
        out, indices = aten.max_pool2d_with_indices(x, *args)
        moved = x.numel() * x.element_size() + out.numel() * out.element_size()
        if pass_ == "forward":
            return (lambda: cf.max_pool2d(x, *args), lambda: F.max_pool2d(x, *args[:4], ceil_mode=args[4]),
                    None, moved)
        if pass_ == "forward_indices":
            return (lambda: cf.max_pool2d(x, *args, return_indices=True),
                    lambda: F.max_pool2d(x, *args[:4], ceil_mode=args[4], return_indices=True),
                    None, moved + indices.numel() * 8)
        grad = torch.randn_like(out)
        return (lambda: ops.max_pool2d_grad_input(grad, x, indices, *args),
                lambda: aten.max_pool2d_with_indices_backward(grad, x, *args, indices),
                None, moved + indices.numel() * 8)

    w = (torch.randn(layer.weight_shape, generator=gen, device=device) * 0.1).to(dtype)
    w = w.contiguous(memory_format=memory_format)
    conv = (list(layer.stride), list(layer.padding), list(layer.dilation), layer.groups)
    flops = 2 * layer.macs(batch)
    out_bytes = batch * layer.weight_shape[0] * math.prod(layer.output_hw()) * x.element_size()
    # Depthwise layers are bound by memory, not arithmetic: what each op must read and write
    # at least (each tensor once; backward is two ops, each reading grad) measures them
    # against the copy bandwidth.
    depthwise = layer.operator == "depthwise"
    tensor_bytes = x.numel() * x.element_size() + w.numel() * w.element_size() + out_bytes
    if pass_ == "forward":
        return (lambda: cf.conv2d(x, w, None, *conv),
                lambda: F.conv2d(x, w, None, *conv), flops, tensor_bytes if depthwise else None)
    grad = torch.randn((batch, layer.weight_shape[0], *layer.output_hw()), generator=gen, device=device).to(dtype)
    grad = grad.contiguous(memory_format=memory_format)
    return (lambda: (ops.conv2d_grad_input(grad, x, w, *conv), ops.conv2d_grad_weight(grad, x, w, *conv)),
            lambda: aten.convolution_backward(grad, x, w, None, *conv[:3], False, [0, 0], conv[3],
                                              [True, True, False]),
            2 * flops, 2 * tensor_bytes if depthwise else None)


def _median_seconds(fn, min_run_time, device):
    if device == "cuda":
        torch.cuda.synchronize()
    # Timer runs on one thread unless told otherwise: measure with the threads set.
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


GRAPH_CALLS = 10


def _graph_replay(fn):
    """A function that replays a CUDA graph of GRAPH_CALLS calls of fn (captured after a
    warm-up call on a side stream, as CUDA graphs require)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(GRAPH_CALLS):
            fn()
    return graph.replay


def time_alternating(ours, native, rounds, min_run_time, device):
    """Medians of ours and native, measured in turns so both see the same machine load."""
    ours_times, native_times = [], []
    for _ in range(rounds):
        ours_times.append(_median_seconds(ours, min_run_time, device))
        native_times.append(_median_seconds(native, min_run_time, device))
    return statistics.median(ours_times), statistics.median(native_times)


# ---------------------------------------------------------------- machine figures


def measure_peaks(device, dtype=torch.float32):
    """(arithmetic GFLOP/s, copy GB/s) of this machine, measured now: on the CPU the FMA
    calibration loop, on a GPU a large matrix product in `dtype` (float32 as TF32 where
    torch.backends.cudnn.allow_tf32 lets convolutions use it)."""
    if device == "cuda":
        a = torch.randn(8192, 8192, device=device, dtype=dtype)
        b = torch.randn_like(a)
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
        try:
            flops = 2 * 8192**3 / _median_seconds(lambda: a @ b, 0.3, device) / 1e9
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
        del a, b
    else:
        flops = _C.measure_fma_peak_gflops(0.5)  # of the widest vectors the CPU has
    src = torch.empty(64 * 2**20, dtype=torch.float32, device=device).uniform_()  # 256 MiB
    dst = torch.empty_like(src)
    seconds = _median_seconds(lambda: dst.copy_(src), 0.5, device)
    return flops, 2 * src.numel() * 4 / seconds / 1e9


def machine_name(device):
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------- running and reporting


def run(layers, batches, passes, dtype, device, memory_format, rounds, min_run_time, progress=True,
        graph=False):
    fma_peak, copy_bandwidth = measure_peaks(device, dtype)
    peak = fma_peak / (2 if dtype == torch.float64 and device == "cpu" else 1)
    jobs = [(layer, batch, p) for batch in batches for layer in layers
            for p in passes if p in (POOL_PASSES if layer.operator == "max_pool2d" else CONV_PASSES)]
    results, start = [], time.perf_counter()
    for i, (layer, batch, pass_) in enumerate(jobs, 1):
        if progress:
            elapsed = time.perf_counter() - start
            print(f"\r[{i}/{len(jobs)} {elapsed:5.0f}s] {layer.network} {layer.name} batch {batch} {pass_}"
                  .ljust(100), end="", file=sys.stderr, flush=True)
        ours, native, flops, moved = _pair_of_calls(layer, batch, dtype, device, memory_format, pass_)
        with torch.no_grad():
            if graph:
                ours_s, native_s = time_alternating(_graph_replay(ours), _graph_replay(native), rounds,
                                                    min_run_time, device)
                ours_s, native_s = ours_s / GRAPH_CALLS, native_s / GRAPH_CALLS
            else:
                ours_s, native_s = time_alternating(ours, native, rounds, min_run_time, device)
        row = dict(network=layer.network, layer=layer.name, operator=layer.operator, shape=layer.describe(),
                   batch=batch, pass_=pass_, ours_ms=ours_s * 1e3, native_ms=native_s * 1e3,
                   speedup=native_s / ours_s)
        if flops:
            row.update(gflops=flops / ours_s / 1e9, native_gflops=flops / native_s / 1e9)
            row["fraction_of_peak"] = row["gflops"] / peak if peak else None
        if moved:  # memory-bound: the fraction is of the copy bandwidth
            row.update(gbs=moved / ours_s / 1e9, native_gbs=moved / native_s / 1e9)
            row["fraction_of_peak"] = row["gbs"] / copy_bandwidth
        results.append(row)
    if progress:
        print(file=sys.stderr)
    return results, fma_peak, copy_bandwidth


CONV_PASSES = ("forward", "backward")
POOL_PASSES = ("forward", "forward_indices", "backward")


def geometric_means(results):
    groups = {}
    for row in results:
        groups.setdefault((row["network"], row["operator"], row["pass_"]), []).append(row["speedup"])
        groups.setdefault(("all", row["operator"], row["pass_"]), []).append(row["speedup"])
    return [dict(network=n, operator=o, pass_=p, layers=len(v),
                 geomean_speedup=math.exp(sum(map(math.log, v)) / len(v)))
            for (n, o, p), v in sorted(groups.items())]


def format_table(results, means):
    head = (f"{'network':12} {'layer':22} {'op':10} {'shape':22} {'N':>3} {'pass':15} {'ours ms':>9} "
            f"{'native ms':>9} {'speedup':>8} {'ours rate':>12} {'% peak':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        rate = f"{r['gbs']:7.1f} GB/s" if "gbs" in r else f"{r['gflops']:7.1f} GF/s"
        frac = f"{100 * r['fraction_of_peak']:6.1f}%" if r["fraction_of_peak"] is not None else "    n/a"
        lines.append(f"{r['network']:12} {r['layer'][:22]:22} {r['operator']:10} {r['shape']:22} {r['batch']:>3} "
                     f"{r['pass_']:15} {r['ours_ms']:9.3f} {r['native_ms']:9.3f} {r['speedup']:7.2f}x "
                     f"{rate:>12} {frac}")
    lines += ["", "geometric-mean speedup (native time / ours):"]
    lines += [f"  {m['network']:12} {m['operator']:10} {m['pass_']:15} {m['geomean_speedup']:6.2f}x "
              f"over {m['layers']} layer(s)" for m in means]
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['network']}/{r['layer']} {r['pass_']} N{r['batch']}" for r in results]
    fig, ax = plt.subplots(figsize=(10, max(3, 0.25 * len(results))))
    colors = ["tab:green" if r["speedup"] >= 1 else "tab:red" for r in results]
    ax.barh(range(len(results)), [r["speedup"] for r in results], color=colors)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(results)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over native (native time / ours)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="classic-ops bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", nargs="+", default=["quick"], choices=["quick", "all", *NETWORKS])
    parser.add_argument("--operator", nargs="+", choices=OPERATORS, default=list(OPERATORS))
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--pass", dest="passes", nargs="+", default=["forward"],
                        choices=["forward", "forward_indices", "backward", "both"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    parser.add_argument("--channels-last", action="store_true", help="channels_last on both sides")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements per side")
    parser.add_argument("--min-run-time", type=float, default=0.1, help="seconds per measurement")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--depthwise-kernel", type=int, metavar="K",
                        help="run the depthwise layers with K x K windows (odd K), padded to keep their outputs")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a speedup chart here (needs matplotlib)")
    parser.add_argument("--graph", action="store_true",
                        help=f"time CUDA graphs of {GRAPH_CALLS} calls per side (GPU time, no launch cost)")
    args = parser.parse_args(argv)
    if args.graph and args.device != "cuda":
        parser.error("--graph needs --device cuda")
    if args.depthwise_kernel is not None and (args.depthwise_kernel < 1 or args.depthwise_kernel % 2 == 0):
        parser.error("--depthwise-kernel must be odd and positive, to keep the layers' output sizes")

    if args.threads:
        torch.set_num_threads(args.threads)
    passes = {p for p in args.passes if p != "both"} | ({"forward", "backward"} if "both" in args.passes else set())
    if "quick" in args.suite:
        layers = quick_layers()
    else:
        names = list(NETWORKS) if "all" in args.suite else args.suite
        layers = [layer for name in names for layer in network_layers(name)]
    layers = [layer for layer in layers if layer.operator in args.operator]
    if args.depthwise_kernel is not None:
        layers = [with_depthwise_kernel(layer, args.depthwise_kernel) for layer in layers]
    dtype = getattr(torch, args.dtype)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    results, fma_peak, bandwidth = run(layers, args.batch, sorted(passes), dtype, args.device, memory_format,
                                       args.rounds, args.min_run_time, graph=args.graph)
    means = geometric_means(results)
    machine = dict(device=args.device, name=machine_name(args.device), threads=torch.get_num_threads(),
                   fma_peak_gflops=fma_peak, copy_bandwidth_gbs=bandwidth, torch=torch.__version__,
                   build=classic_ops.build_info())
    peak_source = ("matrix product" if args.device == "cuda"
                   else f"FMA loop, {'AVX-512' if _C.cpu_has_avx512() else 'AVX2'}")
    print(f"{machine['name']}, {machine['threads']} threads; measured peak {fma_peak:.1f} GFLOP/s "
          f"({peak_source}), "
          f"copy bandwidth {bandwidth:.1f} GB/s; {args.dtype}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}"
          f"{f'; times per call of CUDA graphs of {GRAPH_CALLS} calls' if args.graph else ''}")
    print(format_table(results, means))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(date=datetime.datetime.now().isoformat(timespec="seconds"),
                           command="python -m classic_ops.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
                           machine=machine, dtype=args.dtype, channels_last=args.channels_last,
                           timing=f"CUDA graphs of {GRAPH_CALLS} calls" if args.graph else "calls",
                           results=results, geometric_means=means,
                           layers=[asdict(layer) for layer in layers]), f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    main()
