#!/usr/bin/env bash
# Wheels of what benchmarks/gpu_checks.sh needs and the GPU machine lacks (DeepSpeed and the
# packages it requires that are not in that machine's image), for its Python 3.12, into .whl/
# (ignored by git through .git/info/exclude). Run here, where pip reaches the registries, then
# name ".whl" in the device call's carry. Versions: the ones this project's .venv runs.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PIP=${PIP:-.venv/bin/pip}
version() { "$PIP" show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }

rm -rf .whl && mkdir -p .whl
# DeepSpeed ships as a source distribution; its wheel is pure Python (ops compile on first use).
"$PIP" wheel -q --no-deps --no-build-isolation -w .whl "deepspeed==$(version deepspeed)"
PLATFORMS=()
for n in 2_28 2_27 2_17; do PLATFORMS+=(--platform "manylinux_${n}_x86_64"); done
for name in hjson pydantic pydantic-core annotated-types typing-inspection; do
    "$PIP" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]}" --platform manylinux2014_x86_64 -d .whl "$name==$(version "$name")"
done
du -sh .whl && ls .whl
