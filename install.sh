#!/usr/bin/env bash
# Install cxr-sr into ./.venv (idempotent: a second run only checks). Usage: bash install.sh [--dev]
#   --dev     also the test tools (pytest, pydicom-data) and the system packages the tests use
# TORCH_SPEC  the torch/torchvision requirement to install first (default: the CPU machines' wheels)
# PYTHON      the interpreter that creates the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")"
dev=0
[ "${1:-}" = "--dev" ] && dev=1
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
step() { printf '\033[1m[install]\033[0m %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
  step "creating .venv with ${PYTHON:-python3}"
  "${PYTHON:-python3}" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip setuptools wheel
fi
# torch goes in first and pinned: left to the resolver, a dependency asking for plain "torch"
# would fetch another multi-GB CUDA build.
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  step "installing $TORCH_SPEC (about 5.5 GB, a minute or two)"
  # shellcheck disable=SC2086
  .venv/bin/pip install --quiet $TORCH_SPEC
fi
extras=""
[ $dev = 1 ] && extras="[dev]"
step "installing cxr-sr$extras and its dependencies"
.venv/bin/pip install --quiet -e ".$extras"
if [ $dev = 1 ] && [ -x .ci/system-packages ]; then
  .ci/system-packages
fi
step "done: $(.venv/bin/cxr-sr --version 2>/dev/null || echo 'cxr-sr installed') in $(pwd)/.venv"
