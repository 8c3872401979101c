"""`cxr-sr prep {download,shard,verify,synth}` (also `python -m data_prep ...`).

Each subcommand parses, calls one library function and prints one summary line; expected
failures (bad input, missing credentials, a broken shard set) become a one-line error on stderr
and a non-zero exit code instead of a traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

DEFAULT_DATASET = "nih-chest-xrays/data"


def _size_bytes(text: str) -> int:
    """'500MB', '2GB', '1048576' -> bytes."""
    units = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30, "b": 1}
    lowered = text.strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if lowered.endswith(unit):
            return int(float(lowered[: -len(unit)]) * units[unit])
    return int(lowered)


def _fails_cleanly(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the expected errors of `run` into one line on stderr and exit code 1."""
    def wrapped(args: argparse.Namespace) -> int:
        """`run(args)`, with expected errors reported in one line."""
        try:
            return run(args)
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"cxr-sr prep {args.prep_command}: error: {exc}", file=sys.stderr)
            return 1
    return wrapped


def _run_download(args: argparse.Namespace) -> int:
    from data_prep.download import download_dataset

    path = download_dataset(args.out, dataset=args.dataset, progress=not args.quiet)
    print(f"downloaded {args.dataset} to {path}")
    return 0


def _run_shard(args: argparse.Namespace) -> int:
    from data_prep.manifest import summary_line
    from data_prep.shard import shard_dataset

    manifest = shard_dataset(
        args.source, args.out, seed=args.seed, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, samples_per_shard=args.samples_per_shard,
        shard_bytes=args.shard_bytes, workers=args.workers, unlisted=args.unlisted,
        expect_size_px=args.expect_size, min_size_px=args.min_size, overwrite=args.overwrite,
        progress=not args.quiet, log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    print(f"{args.out}: {summary_line(manifest)}")
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    import json

    from data_prep.manifest import MANIFEST_NAME, summary_line
    from data_prep.verify import verify_shards

    problems = verify_shards(args.dir, deep=args.deep, progress=not args.quiet)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    manifest = json.loads((Path(args.dir) / MANIFEST_NAME).read_text())
    print(f"{args.dir}: ok; {summary_line(manifest)}")
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from data_prep.synth import make_synthetic

    make_synthetic(args.out, args.n, seed=args.seed, size_px=args.size)
    print(f"{args.out}: {args.n} synthetic radiographs of {args.size} px (seed {args.seed})")
    return 0


def _add_shard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shard", help="write patient-disjoint WebDataset shards with DALI indexes")
    p.add_argument("--source", type=Path, required=True, help="Kaggle zip, Kaggle folder or a PNG/DICOM folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (resumed if it holds a partial run)")
    p.add_argument("--seed", type=int, default=0, help="split and order seed (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="of train/val patients (default 0.1)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="of all patients, when there is no official test_list.txt (default 0.1)")
    p.add_argument("--samples-per-shard", type=int, default=1000, help="default 1000")
    p.add_argument("--shard-bytes", type=_size_bytes, default=None, help="also cap shards by source bytes, e.g. 500MB")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores, fewer for small sources)")
    p.add_argument("--unlisted", choices=("infer", "refuse"), default="infer",
                   help="an image without a metadata row: infer its patient (default) or skip it")
    p.add_argument("--expect-size", type=int, default=None, help="skip images that are not N x N px")
    p.add_argument("--min-size", type=int, default=64, help="skip images with a side under N px (default 64)")
    p.add_argument("--overwrite", action="store_true", help="replace a different shard set in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_fails_cleanly(_run_shard))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `prep` and its subcommands to the `cxr-sr` parser."""
    prep = subparsers.add_parser("prep", help="download, shard, verify and synthesise chest X-ray datasets")
    sub = prep.add_subparsers(dest="prep_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("download", help="Kaggle nih-chest-xrays/data, resumable (credentials from env or ~/.kaggle)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dataset", default=DEFAULT_DATASET, help=f"Kaggle dataset (default {DEFAULT_DATASET})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_fails_cleanly(_run_download))
    _add_shard(sub)
    p = sub.add_parser("verify", help="re-check a shard set against its manifest (non-zero exit on a problem)")
    p.add_argument("dir", type=Path)
    p.add_argument("--deep", action="store_true", help="also re-validate every PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_fails_cleanly(_run_verify))
    p = sub.add_parser("synth", help="synthetic chest phantoms in the Kaggle layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=1024, help="side in px (default 1024)")
    p.set_defaults(run=_fails_cleanly(_run_synth))


def main(argv: list[str] | None = None) -> int:
    """`python -m data_prep ...`: the `prep` subcommands without the `cxr-sr prep` prefix."""
    parser = argparse.ArgumentParser(prog="python -m data_prep")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prep", *(sys.argv[1:] if argv is None else argv)])
    return int(args.run(args) or 0)
