#!/usr/bin/env bash
# The peer side's own environment: breaching 0.1.2 with the torch and torchvision it needs.
# breaching imports torchvision, which has no build for the CPU torch fastleak uses here, so this
# venv takes the CUDA build of torch (it runs on the CPU as well). It is never part of fastleak's
# install or of CI.
#
#   bash benchmarks/peers/make_venv.sh [VENV]        # default: benchmarks/peers/.venv
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/.venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "torch==2.14.1" "torchvision==0.29.*" numpy scipy pillow
# breaching's declared requirements pin old releases; its code needs only these at import and run time
"$venv/bin/pip" install -q --no-deps "breaching==0.1.2"
"$venv/bin/pip" install -q "hydra-core>=1.1" "omegaconf" "lpips" "scikit-image" "matplotlib"
"$venv/bin/python" -c "import torch, torchvision, breaching; print('peer venv:', torch.__version__, torchvision.__version__, breaching.__file__)"
