"""`cxr-sr bench train`: training throughput per process and scaling from 1 to 2 processes.

Each case (backend ddp|deepspeed x process count) is a real ``torchrun -m dist_train`` run of the
GAN phase with one scalar per step; the figures come from the trainer's own tensorboard scalars
(``train/patches_per_s`` counts the patches of all ranks, ``train/data_wait_fraction`` the time
spent waiting for batches), so the benchmark measures exactly what training does. The first
``--warmup`` steps are dropped; throughput over the rest is total patches / total time.

    cxr-sr bench train --images ../shared/nih-sample --json bench_train.json
    cxr-sr bench train --config tiny_cpu --images DIR --steps 20 --backends ddp

Scaling efficiency = patches/s with N processes / (N x patches/s with 1 process). On a CPU box
the processes share the cores (one thread each when N > 1), so this is a check of the machinery
rather than a GPU figure; on GPUs run with ``train.device=cuda``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_report import header
from data_prep.atomic import write_bytes_atomic

BACKENDS = ("ddp", "deepspeed")


def read_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every tensorboard scalar of a run as ``{tag: {step: value}}``.

    Event files are read oldest first, so where a resumed run logged a step again (after a kill
    past the last checkpoint) the resumed value wins, as in tensorboard's own view.
    """
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    scalars: dict[str, dict[int, float]] = {}
    files = sorted(Path(run_dir, "tensorboard").glob("events.out.tfevents.*"),
                   key=lambda p: (int(p.name.split(".")[3]), p.name))
    for path in files:
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def case_overrides(backend: str, out_dir: Path, steps: int, warmup: int) -> list[str]:
    return [f"dist.backend={backend}", f"train.out_dir={out_dir}", "train.pretrain_steps=0",
            f"train.gan_steps={warmup + steps}", "train.log_every=1", f"train.val_every={10**9}",
            f"train.ckpt_every={10**9}", "data.val_max_images=1"]


def summarise(scalars: dict[str, dict[int, float]], warmup: int, nproc: int) -> dict:
    """Throughput after the warm-up steps (harmonic mean of per-step rates = patches / time)."""
    rates = [v for step, v in sorted(scalars["train/patches_per_s"].items()) if step > warmup]
    waits = [v for step, v in sorted(scalars["train/data_wait_fraction"].items()) if step > warmup]
    total = len(rates) / sum(1.0 / r for r in rates)
    return {"patches_per_s": total, "patches_per_s_per_process": total / nproc,
            "data_wait_fraction": sum(waits) / len(waits), "timed_steps": len(rates)}


def run_case(backend: str, nproc: int, args: argparse.Namespace, work: Path) -> dict:
    out_dir = work / f"{backend}_{nproc}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "dist_train", "--config", args.config, *args.overrides,
               *case_overrides(backend, out_dir, args.steps, args.warmup)]
    env = dict(os.environ)
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "cxr-sr" / "torch_extensions"))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    log = work / f"{backend}_{nproc}.log"
    with open(log, "w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    case = {"backend": backend, "nproc": nproc, "command": shlex.join(command)}
    if code != 0:
        lines = log.read_text(errors="replace").splitlines()
        causes = [line for line in lines if "Error" in line or "cxr-sr train:" in line]
        return case | {"error": f"exit {code}", "log_tail": (causes or lines)[-5:]}
    return case | summarise(read_scalars(out_dir), args.warmup, nproc)


def add_scaling(cases: list[dict]) -> None:
    """Scaling efficiency of each multi-process case against the same backend's single process."""
    single = {c["backend"]: c for c in cases if c["nproc"] == 1 and "error" not in c}
    for case in cases:
        base = single.get(case["backend"])
        if base and "error" not in case:
            case["scaling_efficiency"] = case["patches_per_s"] / (case["nproc"] * base["patches_per_s"])


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="training patches/s per process and 1 -> 2 process scaling",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="training config (default: default, the published model)")
    parser.add_argument("--images", help="a folder of PNGs: sets data.backend=folder and data.images")
    parser.add_argument("--backends", default="ddp,deepspeed", help="comma-separated: ddp,deepspeed")
    parser.add_argument("--nprocs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS per process, the same for every case (0 = torchrun's choice)")
    parser.add_argument("--json", help="also write the JSON here")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="training config overrides")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or args.steps < 1 or args.warmup < 0:
        print(f"cxr-sr bench train: backends must be among {', '.join(BACKENDS)}, --steps >= 1, --warmup >= 0",
              file=sys.stderr)
        return 2
    if args.images:
        args.overrides = ["data.backend=folder", f"data.images={args.images}", *args.overrides]
    nprocs = [int(n) for n in args.nprocs.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="cxr-sr-bench-train-") as work:
        cases = [run_case(b, n, args, Path(work)) for b in backends for n in nprocs]
    add_scaling(cases)
    report = {"benchmark": "train", **header(),
              "config": args.config, "overrides": args.overrides, "steps": args.steps, "warmup": args.warmup,
              "cases": cases}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        write_bytes_atomic(Path(args.json), (text + "\n").encode())
    return 0 if all("error" not in c for c in cases) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_bench")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
