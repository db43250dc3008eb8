#!/usr/bin/env bash
# Sets up a virtual environment with torch, builds classic_ops into it, and runs a job:
#   ./quickstart.sh demo     the main job: LeNet-5 trained on handwritten digits with our
#                            kernels and with native ones, every op against native torch,
#                            and the quick benchmark suite
#   ./quickstart.sh test     the whole test suite
#   ./quickstart.sh build    set up and build only
# Environment: VENV (default .venv), TORCH_SPEC (default torch==2.14.1), TORCHVISION_SPEC
# (default torchvision==0.29.1, the release paired with that torch; the tests compare the
# networks with torchvision's; empty skips it), PYTHON (default python3.11 or python3),
# CLASSIC_OPS_CUDA=0/1 (see setup.py).
set -euo pipefail
cd "$(dirname "$0")"

job="${1:-demo}"
shift || true
venv="${VENV:-.venv}"
torch_spec="${TORCH_SPEC:-torch==2.14.1}"
torchvision_spec="${TORCHVISION_SPEC-torchvision==0.29.1}"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv with $python"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

echo "== installing $torch_spec and the build tools"
"${pip[@]}" install "$torch_spec" numpy scikit-learn setuptools wheel ninja
if [ "$job" = test ]; then
  "${pip[@]}" install pytest expecttest cmake matplotlib $torchvision_spec
fi

echo "== building classic_ops"
"${pip[@]}" install --no-build-isolation --no-deps -e .

case "$job" in
  demo)
    "$venv/bin/python" -m classic_ops train lenet5 --compare "$@"
    "$venv/bin/python" -m classic_ops demo
    exec "$venv/bin/python" -m classic_ops.bench --suite quick ;;
  test) exec "$venv/bin/python" -m pytest -q "$@" ;;
  build) exec "$venv/bin/python" -m classic_ops info ;;
  *) echo "unknown job '$job' (demo, test or build)" >&2; exit 2 ;;
esac
