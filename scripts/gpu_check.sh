#!/usr/bin/env bash
# The GPU machine's one run (H100/H200, CUDA 13.0, its python3 with torch, no network):
# build for sm_90, run the CUDA tests (a compute-sanitizer memcheck over a small subset
# included), run the CUDA benchmark suites, write logs and JSON under $OUT, and print a
# short summary table last. Sized to finish inside 8 minutes.
#   OUT=/tmp/out scripts/gpu_check.sh
# A Python package the machine turns out to lack can travel as a wheel in .whl/ at the
# repository root; it is installed from there, offline.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
python=${PYTHON:-python3}
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start ))s] $*"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; "$python" -c \
  "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"; } \
  > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

if compgen -G "$repo/.whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps "$repo"/.whl/*.whl > "$out/wheels.log" 2>&1
fi

stamp "building for sm_90"
export TORCH_CUDA_ARCH_LIST=9.0 CLASSIC_OPS_CUDA=1 MAX_JOBS=16
(cd "$repo" && "$python" -m pip install --no-build-isolation --no-deps -v .) > "$out/build.log" 2>&1
build_rc=$?
stamp "build exit $build_rc"

cd "$(mktemp -d)"  # import the installed package, not the source tree
"$python" -c "import classic_ops; print(classic_ops.build_info())" | tee "$out/build_info.txt"

stamp "CUDA tests"
timeout 240 "$python" -m pytest -q -p no:cacheprovider -k "cuda or device_mismatch" \
  --junitxml="$out/tests.xml" "$repo/tests" > "$out/tests.log" 2>&1
tests_rc=$?
tail -3 "$out/tests.log"

stamp "compute-sanitizer memcheck over a small subset"
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 1 "$python" -m pytest -q -p no:cacheprovider \
  -k "cuda and (unbatched or nan_and_infinity or reduced_precision_is_exact)" \
  "$repo/tests/test_conv2d.py" "$repo/tests/test_max_pool2d.py" > "$out/memcheck.log" 2>&1
memcheck_rc=$?
tail -3 "$out/memcheck.log"

stamp "CUDA benchmarks"
bench() {  # name, then bench flags
  local name=$1; shift
  timeout 60 "$python" -m classic_ops.bench --device cuda --rounds 2 --min-run-time 0.05 \
    --json "$out/bench_$name.json" "$@" > "$out/bench_$name.log" 2>&1 || echo "bench $name failed or timed out"
}
bench fp16_conv --suite vgg16 resnet50 --operator conv2d pointwise --batch 32 --dtype float16 --channels-last
bench bf16_depthwise --suite mobilenet_v1 mobilenet_v2 --operator depthwise --batch 32 --dtype bfloat16
bench fp32_depthwise_cl --suite mobilenet_v2 --operator depthwise --batch 32 --channels-last
bench fp32_pool --suite vgg16 resnet50 --operator max_pool2d --batch 32 --pass forward forward_indices
bench fp16_backward --suite resnet50 --operator conv2d --batch 32 --dtype float16 --channels-last --pass backward

stamp "summary"
"$python" - "$out" "$build_rc" "$tests_rc" "$memcheck_rc" <<'PY'
import glob, json, os, sys
out, build_rc, tests_rc, memcheck_rc = sys.argv[1], *sys.argv[2:]
print(f"build exit {build_rc}, CUDA tests exit {tests_rc}, memcheck exit {memcheck_rc}")
print(f"{'benchmark':22} {'operator':11} {'pass':16} {'layers':>6} {'geomean speedup':>16}")
for path in sorted(glob.glob(os.path.join(out, "bench_*.json"))):
    data = json.load(open(path))
    for m in data["geometric_means"]:
        if m["network"] == "all":
            name = os.path.basename(path)[6:-5]
            print(f"{name:22} {m['operator']:11} {m['pass_']:16} {m['layers']:>6} {m['geomean_speedup']:15.2f}x")
PY
