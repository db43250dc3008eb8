"""The GPU run's closing table: each benchmark file's geometric-mean speedups and
fractions of the measured peak (arithmetic, or the copy bandwidth for depthwise and
max-pool; their geometric mean and best) against the CUDA issue's targets.

    python scripts/gpu_summary.py OUT_DIR [build_rc tests_rc memcheck_rc]
"""
import glob
import json
import math
import os
import sys

# (operator, pass, dtypes or None for any, only 3x3 windows) -> (least speedup, least
# fraction of the copy bandwidth or None), as the issue states them.
TARGETS = [
    ("conv2d", "forward", {"float16", "bfloat16"}, True, 0.9, None),
    ("conv2d", "forward", {"float32"}, True, 0.8, None),
    ("pointwise", "forward", None, False, 0.9, None),
    ("depthwise", "forward", {"float32", "bfloat16"}, False, 2.0, 0.7),
    ("max_pool2d", "forward", None, False, 1.5, 0.8),
    ("conv2d", "backward", None, False, 0.7, None),
    ("pointwise", "backward", None, False, 0.7, None),
]


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values))


def rows_of(path):
    """(benchmark name, dtype, [(operator, pass, the target's rows, target or None)])."""
    data = json.load(open(path))
    name = os.path.basename(path)[len("bench_"):-len(".json")]
    groups = {}
    for row in data["results"]:
        groups.setdefault((row["operator"], row["pass_"]), []).append(row)
    out = []
    for (operator, pass_), rows in sorted(groups.items()):
        target = next((t for t in TARGETS if t[:2] == (operator, pass_) and (t[2] is None or data["dtype"] in t[2])),
                      None)
        if target and target[3]:
            rows = [r for r in rows if " k3s" in r["shape"]]
        if rows:
            out.append((operator + (" 3x3" if target and target[3] else ""), pass_, rows, target))
    return name, out


def summary(out_dir):
    lines = [f"{'benchmark':26} {'operator':14} {'pass':15} {'layers':>6} {'geomean':>8} {'% peak':>7} "
             f"{'best %':>7} {'target':>14} {'met':>4}"]
    for path in sorted(glob.glob(os.path.join(out_dir, "bench_*.json"))):
        name, groups = rows_of(path)
        for operator, pass_, rows, target in groups:
            speedup = geomean([r["speedup"] for r in rows])
            fractions = [r["fraction_of_peak"] or 0 for r in rows]
            fraction = geomean(fractions) if min(fractions) > 0 else 0.0
            wanted, met = "", ""
            if target:
                least_speedup, least_fraction = target[4], target[5]
                wanted = f">={least_speedup}x" + (f", {100 * least_fraction:.0f}%" if least_fraction else "")
                met = "yes" if speedup >= least_speedup and (least_fraction is None or fraction >= least_fraction) else "no"
            lines.append(f"{name:26} {operator:14} {pass_:15} {len(rows):>6} {speedup:7.2f}x {100 * fraction:6.1f}% "
                         f"{100 * max(fractions):6.1f}% {wanted:>14} {met:>4}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1]))
    if len(sys.argv) == 5:
        print("build exit {}, CUDA tests exit {}, memcheck exit {}".format(*sys.argv[2:]))
