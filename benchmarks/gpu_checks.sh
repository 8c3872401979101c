#!/usr/bin/env bash
# The GPU measurements that benchmarks/RESULTS.md's targets call for, and the check that DALI CPU
# decoding feeds CUDA training, as one prepared run for a lent GPU machine (one call of the device
# tool; about 5 minutes on an H200). Results land in OUT as JSON + markdown + text; copy the
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
#   folder of synthetic 1024 px radiographs with the PyTorch folder loader, `mixed` DALI
#   decoding cannot be measured there, and the DALI CPU-decoding check at the end reports itself
#   as not run. On a GPU machine with DALI it runs.
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
# bicubic, 256 -> 1024, TorchScript and eager, every batch size (the 1,000 images/s target).
"$PYTHON" -m launch bench throughput --device "$DEVICE" --dtype "$DTYPE" "${THROUGHPUT[@]}" \
    --json "$OUT/throughput.json" --markdown "$OUT/throughput.md"

# Training: the GAN phase at the config's model, patch and batch in bf16, one process per GPU
# (the 1,000 patches/s target at 96 -> 384 px; data wait under 5% of a step).
"$PYTHON" -m launch bench train --config "$CONFIG" --images "$WORK/images" --backends "$BACKENDS" \
    --nprocs 1 --threads 0 "${STEPS[@]}" --json "$OUT/train.json" \
    train.device="$DEVICE" train.precision=bf16 data.device=cpu data.workers="$WORKERS" \
    loss.perceptual_weight=1.0 loss.perceptual_weights="$WORK/vgg19_random.pth"

# DALI decoding on the CPU feeding training on DEVICE (data.device=cpu, the default, with
# train.device=cuda): every batch must arrive on DEVICE, equal to the same loader's batches on the
# CPU. Needs DALI; where it is missing (the lent GPU machines, see above) the check says so.
if "$PYTHON" -c "import nvidia.dali" 2>/dev/null; then
    "$PYTHON" -m launch prep synth --out "$WORK/dali_images" -n 16 --size 128 --seed 1
    "$PYTHON" -m launch prep shard --source "$WORK/dali_images" --out "$WORK/dali_shards" \
        --val-fraction 0.25 --samples-per-shard 4 --workers 1 --quiet
    "$PYTHON" - "$WORK/dali_shards" "$DEVICE" <<'EOF' | tee "$OUT/dali_cpu_decode.txt"
import sys

import torch

from dist_train.config import load_config
from dist_train.data import build_train_loader, build_val_loader

shards, device = sys.argv[1], torch.device(sys.argv[2])
cfg = load_config(None, ["data.backend=dali", f"data.shards={shards}", "data.device=cpu",
                         "data.patch_px=32", "data.batch_size=4", "data.workers=1",
                         f"train.device={device.type}"])
on_device, on_host = (build_train_loader(cfg, 0, 1, d) for d in (device, torch.device("cpu")))
for step in range(3):
    (lr, hr), (lr_host, hr_host) = on_device.next_batch(), on_host.next_batch()
    assert lr.device.type == hr.device.type == device.type, (lr.device, hr.device)
    assert torch.equal(lr.cpu(), lr_host) and torch.equal(hr.cpu(), hr_host), f"train batch {step}"
val_pairs = list(zip(build_val_loader(cfg, 0, 1, device), build_val_loader(cfg, 0, 1, torch.device("cpu"))))
assert val_pairs, "no validation batch"
for (lr, hr), (lr_host, hr_host) in val_pairs:
    assert hr.device.type == device.type and torch.equal(hr.cpu(), hr_host) and torch.equal(lr.cpu(), lr_host)
print(f"dali data.device=cpu -> train.device={device}: 3 train and {len(val_pairs)} val batches "
      "equal to the CPU loader's")
EOF
else
    echo "dali data.device=cpu -> train.device=$DEVICE: not checked (DALI is not installed here)" \
        | tee "$OUT/dali_cpu_decode.txt"
fi
echo "results in $OUT"
