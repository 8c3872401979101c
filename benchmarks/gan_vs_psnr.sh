#!/usr/bin/env bash
# The GAN recipe against the PSNR model it fine-tunes, on radiographs of patients neither saw:
# trains `--config cxr_cpu_gan` from the shipped default model, exports its EMA generator and
# measures both side by side with `cxr-sr bench quality` (PSNR, SSIM, HF energy ratio), with a
# crop figure per image set. Usage (from the project root, after `bash install.sh`):
#   bash benchmarks/gan_vs_psnr.sh [NIH_FOLDER] [GAN_STEPS]
# About 4 minutes on a 2-core CPU with bf16 in hardware, about 25 on an AVX2-only one; the training
# part resumes where it stopped if interrupted.
# Everything goes under runs/gan_vs_psnr (the figures hold NIH pixels: they stay out of the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-../shared/nih-sample}
steps=${2:-300}
run=runs/gan_vs_psnr
bin=.venv/bin
"$bin/cxr-sr" train --config cxr_cpu_gan --resume "data.images=$images" "train.out_dir=$run" "train.gan_steps=$steps"
"$bin/cxr-sr" export --run "$run" --out "$run/gan_x4.pt"
psnr=export/models/cxr_sr_x4.pt
# the run's validation images: the last 24 by name, the PSNR model's validation images too
mapfile -t val < <("$bin/python" -c "
from dist_train.config import load_config
from dist_train.data.folder import split_paths
print('\n'.join(map(str, split_paths(load_config('$run/config.yaml'))[1])))")
side_by_side=(--model "$psnr" "$run/gan_x4.pt" --label psnr gan --crop-px 0)
"$bin/cxr-sr" bench quality "${side_by_side[@]}" -i "${val[@]}" --json "$run/quality_val.json" \
  --markdown "$run/quality_val.md" --figure "$run/quality_val.png"
if [ -d ../shared/realxray ]; then
  "$bin/cxr-sr" bench quality "${side_by_side[@]}" -i ../shared/realxray/*.png --json "$run/quality_real_png.json" \
    --markdown "$run/quality_real_png.md" --figure "$run/quality_real_png.png"
fi
