#!/usr/bin/env bash
# The GPU machine's one run (H100/H200, CUDA 13.0, its python3 with torch, no network):
# build for sm_90a, run the CUDA tests (a compute-sanitizer memcheck over a small subset
# included), run the CUDA benchmark suites, write logs and JSON under $OUT, and print a
# short summary table last. Sized to finish inside 8 minutes (about 6 here).
#   OUT=/tmp/out [DEADLINE_S=400] [PACK_OUT=1] scripts/gpu_check.sh
# DEADLINE_S: seconds from the start after which no benchmark starts; PACK_OUT: see the end.
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

# sm_90a: sm_90 with Hopper's warpgroup MMA, which the forward GEMM takes where
# CLASSIC_OPS_WGMMA=1 or 128 (64- or 128-byte steps; its tests set it, the *_wgmma
# benchmarks below too). Should the
# machine's torch or nvcc refuse 9.0a, the run goes on with an sm_90 build (the warpgroup
# tests then skip) rather than lose its device time.
export CLASSIC_OPS_CUDA=1 MAX_JOBS=16
build() {  # arch list, log name
  (cd "$repo" && TORCH_CUDA_ARCH_LIST=$1 "$python" -m pip install --no-build-isolation --no-deps -v .) \
    > "$out/$2" 2>&1
}
stamp "building for sm_90a"
build 9.0a build.log
build_rc=$?
if [ "$build_rc" != 0 ]; then
  tail -30 "$out/build.log"
  stamp "sm_90a build exit $build_rc; building for sm_90"
  build 9.0 build_sm90.log
  build_rc=$?
  [ "$build_rc" = 0 ] || tail -30 "$out/build_sm90.log"
fi
stamp "build exit $build_rc"

cd "$(mktemp -d)"  # import the installed package, not the source tree
"$python" -c "import classic_ops; print(classic_ops.build_info())" | tee "$out/build_info.txt"

stamp "CUDA tests"
# xdist, where the machine has it, spreads the tests (and their float64 CPU references)
# over its cores; without it the tests run in one process rather than not at all.
workers=()
"$python" -c "import xdist" 2> /dev/null && workers=(-n 8)
timeout "${TESTS_TIMEOUT:-170}" "$python" -m pytest -q -p no:cacheprovider ${workers[@]+"${workers[@]}"} \
  -k "${TESTS_K:-(cuda or device_mismatch) and not emulated}" --junitxml="$out/tests.xml" "$repo/tests" \
  > "$out/tests.log" 2>&1
tests_rc=$?
grep -E "^(FAILED|ERROR)" "$out/tests.log" | head -20
tail -2 "$out/tests.log"

stamp "compute-sanitizer memcheck over a small subset"
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 1 "$python" -m pytest -q \
  -p no:cacheprovider -k "unbatched or graph or (tensor_core and bfloat16 and cl) or \
  (depthwise and bfloat16) or (split_reduction and float16) or (2x2_pool and float16) or \
  (warpgroup and float16)" \
  "$repo/tests/test_max_pool2d.py" "$repo/tests/test_cuda_kernels.py" > "$out/memcheck.log" 2>&1
memcheck_rc=$?
tail -3 "$out/memcheck.log"

stamp "CUDA benchmarks"
deadline=${DEADLINE_S:-450}  # seconds from the start after which no benchmark starts
bench() {  # name, then bench flags
  local name=$1; shift
  if (( $(date +%s) - start > deadline )); then echo "bench $name skipped: past ${deadline}s"; return; fi
  timeout 60 "$python" -m classic_ops.bench --device cuda --rounds 2 --min-run-time 0.03 \
    --json "$out/bench_$name.json" "$@" > "$out/bench_$name.log" 2>&1 || echo "bench $name failed or timed out"
}
bench fp16_conv --suite vgg16 resnet50 --operator conv2d pointwise --batch 32 --dtype float16 --channels-last
export CLASSIC_OPS_WGMMA=1
bench fp16_conv_wgmma --suite vgg16 resnet50 --operator conv2d pointwise --batch 32 --dtype float16 --channels-last
CLASSIC_OPS_WGMMA=128 bench fp16_conv_wgmma128 --suite vgg16 resnet50 --operator conv2d pointwise --batch 32 --dtype float16 --channels-last
bench bf16_conv_wgmma --suite vgg16 resnet50 --operator conv2d pointwise --batch 32 --dtype bfloat16 --channels-last
bench tf32_conv_wgmma --suite vgg16 resnet50 --operator conv2d pointwise --batch 32 --channels-last
unset CLASSIC_OPS_WGMMA
bench bf16_depthwise --suite mobilenet_v1 mobilenet_v2 --operator depthwise --batch 32 --dtype bfloat16
# The depthwise target's other windows, dtypes and layouts (MobileNet's layers at 7x7).
bench bf16_depthwise_7x7 --suite mobilenet_v1 mobilenet_v2 --operator depthwise --batch 32 --dtype bfloat16 \
  --depthwise-kernel 7
bench fp32_depthwise_cl_7x7 --suite mobilenet_v1 mobilenet_v2 --operator depthwise --batch 32 --channels-last \
  --depthwise-kernel 7
bench fp16_backward --suite resnet50 --operator conv2d pointwise --batch 32 --dtype float16 --channels-last --pass backward
bench bf16_depthwise_cl_backward --suite mobilenet_v2 --operator depthwise --batch 32 --dtype bfloat16 --channels-last --pass backward
bench fp32_pool --suite vgg16 resnet50 googlenet --operator max_pool2d --batch 32 --pass forward forward_indices
bench tf32_conv --suite vgg16 resnet50 --operator conv2d pointwise --batch 32 --channels-last
bench fp32_depthwise_cl --suite mobilenet_v1 mobilenet_v2 --operator depthwise --batch 32 --channels-last
bench bf16_conv --suite vgg16 resnet50 --operator conv2d pointwise --batch 32 --dtype bfloat16 --channels-last
bench fp16_pool_cl --suite vgg16 resnet50 googlenet --operator max_pool2d --batch 32 --dtype float16 --channels-last
bench fp32_depthwise --suite mobilenet_v1 mobilenet_v2 --operator depthwise --batch 32
bench bf16_depthwise_cl --suite mobilenet_v1 mobilenet_v2 --operator depthwise --batch 32 --dtype bfloat16 --channels-last
# GPU time without the host's launch cost (CUDA graphs), where small layers' wall-clock
# times measure the host instead of the kernels.
bench fp16_conv_graph --suite resnet50 --operator conv2d pointwise --batch 32 --dtype float16 --channels-last --graph
bench bf16_depthwise_graph --suite mobilenet_v2 --operator depthwise --batch 32 --dtype bfloat16 --graph

stamp "summary"
"$python" "$repo/scripts/gpu_summary.py" "$out" "$build_rc" "$tests_rc" "$memcheck_rc"

# PACK_OUT=1: leave one archive (logs.tgz) and this run's console log in $OUT, for machines
# that hand back only a few files.
if [ "${PACK_OUT:-0}" = 1 ]; then
  (cd "$out" && tar czf ../gpu_check_logs.tgz . && mv ../gpu_check_logs.tgz logs.tgz &&
   find . -type f ! -name logs.tgz ! -name gpu_check.log -delete)
fi
