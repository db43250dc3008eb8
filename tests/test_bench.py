"""The microbenchmark suite runs, covers the networks' real layers, and writes its outputs."""
import importlib.util
import json
import pathlib
import subprocess

import pytest
import torch

from classic_ops import bench
from conftest import HAS_CUDA, num_threads


def test_network_layers_are_the_real_ones():
    vgg = bench.network_layers("vgg16")
    convs = [layer for layer in vgg if layer.operator == "conv2d"]
    assert {layer.weight_shape for layer in convs} >= {(64, 3, 3, 3), (512, 512, 3, 3)}
    assert sum(layer.count for layer in convs) == 13
    assert sum(layer.count for layer in vgg if layer.operator == "max_pool2d") == 5
    mobilenet = bench.network_layers("mobilenet_v1")
    assert {layer.operator for layer in mobilenet} == {"conv2d", "depthwise", "pointwise"}
    resnet = bench.network_layers("resnet50")
    assert any(layer.operator == "pointwise" and layer.stride == (2, 2) for layer in resnet)
    for name in bench.NETWORKS:
        assert bench.network_layers(name)


def test_layer_arithmetic():
    layer = next(layer for layer in bench.network_layers("vgg16") if layer.name == "features.0")
    assert layer.macs(batch=2) == 2 * 64 * 224 * 224 * 3 * 9
    assert layer.output_hw() == (224, 224)


def test_bench_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    results = bench.main(["--suite", "lenet5", "--pass", "both", "forward_indices", "--rounds", "1",
                          "--min-run-time", "0.01", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "geometric-mean speedup" in printed and "GFLOP/s" in printed
    data = json.loads(out.read_text())
    assert data["machine"]["fma_peak_gflops"] >= 0 and data["machine"]["copy_bandwidth_gbs"] > 0
    assert len(data["results"]) == len(results) > 0
    passes = {(r["operator"], r["pass_"]) for r in data["results"]}
    assert ("conv2d", "backward") in passes and ("max_pool2d", "forward_indices") in passes
    assert all(r["ours_ms"] > 0 and r["native_ms"] > 0 for r in data["results"])


def test_depthwise_layers_at_a_wider_window_keep_their_outputs():
    for layer in bench.network_layers("mobilenet_v2"):
        wide = bench.with_depthwise_kernel(layer, 7)
        if layer.operator != "depthwise":
            assert wide == layer
            continue
        assert wide.weight_shape == (*layer.weight_shape[:2], 7, 7) and wide.kernel_size == (7, 7)
        assert wide.output_hw() == layer.output_hw() and wide.macs(1) == layer.macs(1) * 49 // 9


def test_depthwise_is_measured_against_the_copy_bandwidth(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--suite", "mobilenet_v1", "--operator", "depthwise", "--depthwise-kernel", "7",
                "--pass", "both", "--rounds", "1", "--min-run-time", "0.01", "--json", str(out)])
    assert "GB/s" in capsys.readouterr().out
    data = json.loads(out.read_text())
    bandwidth = data["machine"]["copy_bandwidth_gbs"]
    for row in data["results"]:
        assert " k7s" in row["shape"]
        c, h, w = map(int, row["shape"].split("->")[0].split("x"))
        layer_bytes = 4 * (c * h * w + c * h * w // (1 if " k7s1" in row["shape"] else 4) + 49 * c)
        passes = 2 if row["pass_"] == "backward" else 1
        assert row["gbs"] == pytest.approx(passes * layer_bytes / row["ours_ms"] / 1e6)
        assert row["fraction_of_peak"] == pytest.approx(row["gbs"] / bandwidth)


@pytest.mark.parametrize("size", ["4", "0", "-3"])
def test_depthwise_kernel_must_be_odd_and_positive(size, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--suite", "mobilenet_v1", "--depthwise-kernel", size])
    assert "--depthwise-kernel must be odd and positive" in capsys.readouterr().err


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [dict(network="n", layer="l", pass_="forward", batch=1, speedup=s) for s in (0.5, 2.0)]
    bench.plot(rows, tmp_path / "speedup.png")
    assert (tmp_path / "speedup.png").stat().st_size > 0


def test_timing_runs_with_the_threads_set():
    # torch.utils.benchmark.Timer defaults to one thread; --threads must reach the kernels.
    seen = []
    with num_threads(2):
        bench._median_seconds(lambda: seen.append(torch.get_num_threads()), 0.01, "cpu")
    assert seen and set(seen) == {2}


def test_graph_timing_needs_a_gpu(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--suite", "lenet5", "--graph"])
    assert "--graph needs --device cuda" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and a CUDA build")
def test_graph_timing_on_cuda(tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--suite", "lenet5", "--device", "cuda", "--pass", "both", "forward_indices", "--graph",
                "--rounds", "1", "--min-run-time", "0.01", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["timing"] == f"CUDA graphs of {bench.GRAPH_CALLS} calls"
    assert all(r["ours_ms"] > 0 and r["native_ms"] > 0 for r in data["results"])


def load_gpu_summary():
    path = pathlib.Path(__file__).parent.parent / "scripts" / "gpu_summary.py"
    spec = importlib.util.spec_from_file_location("gpu_summary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_summary_holds_each_file_to_its_target(tmp_path):
    def write(name, dtype, rows):
        results = [dict(operator=op, pass_=p, shape=shape, speedup=speedup, fraction_of_peak=fraction)
                   for op, p, shape, speedup, fraction in rows]
        (tmp_path / f"bench_{name}.json").write_text(json.dumps(dict(dtype=dtype, results=results)))

    # 3x3 convolutions only count toward the convolution target; depthwise needs both the
    # speedup and the bandwidth; a pass without a target gets none.
    write("fp16_conv", "float16", [("conv2d", "forward", "64x56x56->64 k3s1", 1.0, 0.5),
                                   ("conv2d", "forward", "3x224x224->64 k7s2", 0.1, 0.1),
                                   ("pointwise", "forward", "64x56x56->256 k1s1", 0.81, 0.3)])
    write("bf16_depthwise", "bfloat16", [("depthwise", "forward", "32x112x112->32 k3s1", 4.0, 0.8),
                                         ("depthwise", "forward", "1024x7x7->1024 k3s1", 1.0, 0.6)])
    write("fp32_pool", "float32", [("max_pool2d", "forward_indices", "64x112x112 k3s2", 1.0, 0.5)])
    lines = {tuple(line.split()[:2]): line for line in load_gpu_summary().summary(str(tmp_path)).splitlines()[1:]}
    conv = lines[("fp16_conv", "conv2d")].split()
    assert conv[2:5] == ["3x3", "forward", "1"] and conv[5] == "1.00x" and conv[-1] == "yes"
    assert lines[("fp16_conv", "pointwise")].split()[-1] == "no"  # 0.81x against 0.9x
    depthwise = lines[("bf16_depthwise", "depthwise")].split()
    assert depthwise[4] == "2.00x" and depthwise[5] == "69.3%" and depthwise[-1] == "no"  # sqrt(0.48) < 70%
    pool = lines[("fp32_pool", "max_pool2d")].split()
    assert pool[2] == "forward_indices" and pool[-1] == "50.0%"  # no target: nothing after the fractions


def test_gpu_check_script_parses():
    script = pathlib.Path(__file__).parent.parent / "scripts" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
