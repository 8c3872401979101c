"""``cxr-sr demo``: the whole pipeline end to end on CPU, with a summary table and a report.

    cxr-sr demo                      # synthetic data, the full run (< 10 min on 2 cores)
    cxr-sr demo --images DIR         # your PNG/DICOM folder (or an extracted Kaggle download)
    cxr-sr demo --quick --out DIR    # a reduced run (small images, few steps), for tests

Every step shows what it does; re-running reuses the steps already complete (with the same
settings); a failure names the step and its log file.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

DEFAULT_OUT = "runs/demo"
# what --fresh may delete: the folders and files the demo itself writes under --out
DEMO_OUTPUTS = (".demo", "synth", "shards", "holdback", "run", "model", "cpp", "bench", "figures", "logs",
                "report.md")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("demo", help="the whole pipeline end to end on CPU, with a report",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--images", type=Path, help="a folder of real PNG/DICOM images instead of synthetic data")
    parser.add_argument("--quick", action="store_true", help="reduced size: small images, a few steps (~2 min)")
    parser.add_argument("--fresh", action="store_true", help="delete the demo's earlier outputs in --out first")
    parser.add_argument("--n-images", type=int, help="synthetic images (default 40; 12 with --quick)")
    parser.add_argument("--size", type=int, dest="size_px", help="synthetic image side, px (default 1024)")
    parser.add_argument("--pretrain-steps", type=int, help="PSNR-phase steps")
    parser.add_argument("--gan-steps", type=int, help="GAN-phase steps")
    parser.add_argument("--nproc", type=int, help="training processes (default 2)")
    parser.set_defaults(run=run)
    return parser


def _settings(args: argparse.Namespace):
    from launch.demo.settings import DemoSettings

    overrides = {name: getattr(args, name) for name in ("n_images", "size_px", "pretrain_steps", "gan_steps", "nproc")
                 if getattr(args, name) is not None}
    if args.images is not None:
        if not args.images.is_dir():
            raise ValueError(f"--images {args.images}: not a folder")
        overrides["images"] = str(args.images.resolve())
    return DemoSettings.quick(**overrides) if args.quick else DemoSettings(**overrides)


def _clear(out: Path) -> None:
    for name in DEMO_OUTPUTS:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def run(args: argparse.Namespace) -> int:
    from launch.demo.pipeline import DemoPaths, build_steps
    from launch.demo.report import summary_table
    from launch.demo.steps import StepFailed, StepRunner

    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"cxr-sr demo: {exc}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    if args.fresh:
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = DemoPaths(out)
    print(f"cxr-sr demo: {'quick' if args.quick else 'full'} run into {out}", file=sys.stderr, flush=True)
    runner = StepRunner(out, settings.digest())
    start_s = time.perf_counter()
    try:
        runner.run_all(build_steps(settings, paths))
    except StepFailed as exc:
        print(f"cxr-sr demo: {exc}", file=sys.stderr)
        _print_log_tail(exc.log)
        return 1
    except KeyboardInterrupt:
        print("cxr-sr demo: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    elapsed_s = time.perf_counter() - start_s
    print(f"\n{summary_table(paths)}\n")
    print(f"demo finished in {elapsed_s / 60:.1f} min (this invocation; reused steps not counted)")
    print(f"run:    {paths.run}")
    print(f"model:  {paths.model}")
    print(f"report: {paths.report}")
    return 0


def _print_log_tail(log: Path, lines: int = 15) -> None:
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    print(f"--- last {len(tail)} lines of {log} ---", file=sys.stderr)
    for line in tail:
        print(f"  {line}", file=sys.stderr)
