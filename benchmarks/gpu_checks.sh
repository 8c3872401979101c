#!/usr/bin/env bash
# The GPU measurements of issues 4-6, as one prepared run for a lent GPU machine (one call of the
# device tool; about 5 minutes on an H200). Results land in OUT as JSON + markdown; copy the
# figures into benchmarks/RESULTS.md with the device named.
#
#   bash benchmarks/gpu_checks.sh OUT                  # on the GPU machine, from the repo root
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_checks.sh OUT   # the same wiring on a CPU (tests)
#
# What the GPU machine lacks, and how this copes (see benchmarks/RESULTS.md, "GPU runs"):
# * No install and no internet: the code runs from the checkout (PYTHONPATH), on the machine's own
#   torch, torchvision, torchmetrics and tensorboard. DeepSpeed is not there: carry it as wheels
#   (`bash benchmarks/gpu_wheels.sh` here, then `carry: [".whl"]`); without them only DDP runs.
# * No DALI (its wheel is far over the device tool's 64 MiB carry limit), so training reads a
#   folder of synthetic 1024 px radiographs with the PyTorch folder loader, and `mixed` DALI
#   decoding cannot be measured there.
# * No VGG19 weights: the perceptual loss runs on a randomly initialised VGG19 saved to a file.
#   The arithmetic is the same, so the step time is; the loss values mean nothing (timing only).
set -euo pipefail

OUT=${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}

if [ -d .whl ] && ! "$PYTHON" -c "import deepspeed" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
BACKENDS=ddp
if "$PYTHON" -c "import deepspeed" 2>/dev/null; then BACKENDS=ddp,deepspeed; fi

if [ "$QUICK" = 1 ]; then
    IMAGES=(-n 8 --size 256); CONFIG=tiny_cpu; STEPS=(--steps 2 --warmup 1); WORKERS=1
    THROUGHPUT=(--lr-px 32 --batch-sizes 1 --warmup 1 --repeats 1)
else
    IMAGES=(-n 96 --size 1024); CONFIG=default; STEPS=(--steps 30 --warmup 5); WORKERS=12
    THROUGHPUT=()
fi
DTYPE=$([ "$DEVICE" = cuda ] && echo bfloat16 || echo float32)

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__,
                  'cuda', torch.cuda.is_available())"
    echo "training backends: $BACKENDS"
} | tee "$OUT/env.txt"

"$PYTHON" -m launch prep synth --out "$WORK/images" "${IMAGES[@]}"
"$PYTHON" -c "import sys, torch, torchvision
torch.save(torchvision.models.vgg19(weights=None).state_dict(), sys.argv[1])" "$WORK/vgg19_random.pth"

# Inference: the default generator (random weights: speed does not depend on them) against
# bicubic, 256 -> 1024, TorchScript and eager, every batch size (issue 6's 1,000 images/s goal).
"$PYTHON" -m launch bench throughput --device "$DEVICE" --dtype "$DTYPE" "${THROUGHPUT[@]}" \
    --json "$OUT/throughput.json" --markdown "$OUT/throughput.md"

# Training: the GAN phase at the config's model, patch and batch in bf16, one process per GPU
# (issue 5's 1,000 patches/s at 96 -> 384 px; issue 4's data wait under 5% of a step).
"$PYTHON" -m launch bench train --config "$CONFIG" --images "$WORK/images" --backends "$BACKENDS" \
    --nprocs 1 --threads 0 "${STEPS[@]}" --json "$OUT/train.json" \
    train.device="$DEVICE" train.precision=bf16 data.device=cpu data.workers="$WORKERS" \
    loss.perceptual_weight=1.0 loss.perceptual_weights="$WORK/vgg19_random.pth"
echo "results in $OUT"
