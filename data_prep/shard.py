"""`prep shard`: a source (Kaggle zip, Kaggle folder, any PNG/DICOM folder) to a shard set.

Plan (catalog, patient-disjoint split, seeded order, fixed-size shards), then write every shard
not already complete, on all cores, then `manifest.json`. Each shard is the unit of resume: a
re-run after a kill finds complete shards by their state files (`.partial/`, removed once the
manifest is written) and redoes only the rest. Output layout: docs/contracts.md §2.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.atomic import remove_stale_tmp
from data_prep.catalog import UNLISTED_CHOICES, Candidate, Catalog, build_catalog
from data_prep.image_io import IMAGE_SUFFIXES
from data_prep.manifest import MANIFEST_NAME, build_manifest, write_manifest
from data_prep.shard_writer import STATE_DIR, ShardTask, SizeRule, write_shard
from data_prep.sources import open_source
from data_prep.split import SPLITS, assign_splits, seeded_rank

FORMAT_VERSION = 1
# A spawned worker costs about 2 CPU-seconds to start (webdataset imports torch), the time it
# takes to validate about 400 images: below this many images per worker, fewer workers are faster.
MIN_IMAGES_PER_WORKER = 400
SHARD_FILE = re.compile(r"^(train|val|test)-\d{6}\.(tar|idx)$")


def plan_shards(candidates: list[Candidate], assignment: dict[str, str], *, seed: int,
                samples_per_shard: int, shard_bytes: int | None, settings_digest: str) -> list[ShardTask]:
    """Group each split's candidates, in seeded order, into shards of at most `samples_per_shard`
    samples and (if set) about `shard_bytes` bytes of source data."""
    tasks = []
    for split in SPLITS:
        members = sorted((c for c in candidates if assignment[c.meta.patient_id] == split),
                         key=lambda c: seeded_rank(seed, c.key))
        groups: list[list[Candidate]] = []
        total = 0
        for item in members:
            full = groups and (len(groups[-1]) >= samples_per_shard
                               or (shard_bytes and total + item.size > shard_bytes))
            if not groups or full:
                groups.append([])
                total = 0
            groups[-1].append(item)
            total += item.size
        for index, group in enumerate(groups):
            description = [settings_digest, split, index,
                           [(c.name, c.key, c.size, c.patient_from, c.meta.to_json()) for c in group]]
            digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
            tasks.append(ShardTask(split, index, tuple(group), digest))
    return tasks


def auto_workers(n_images: int) -> int:
    """The cores this process may use (a SLURM/cgroup share, not the whole node), but no more
    workers than the work pays for (see MIN_IMAGES_PER_WORKER)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n_images // MIN_IMAGES_PER_WORKER))


def _completed(out: Path, task: ShardTask) -> dict | None:
    """The record of a shard a previous run finished with the same plan, else None."""
    state_path = out / STATE_DIR / f"{task.stem}.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return None
    record = state.get("record", {})
    if state.get("digest") != task.digest:
        return None
    if record.get("samples"):
        tar, idx = out / record["file"], out / record["index_file"]
        if not idx.is_file() or not tar.is_file() or tar.stat().st_size != record["bytes"]:
            return None
    return record


_worker_state: dict[str, Any] = {}


def _init_worker(source: Any, out: Path, sizes: SizeRule, progress: Any) -> None:
    """Pool initializer: what every task of this worker shares."""
    _worker_state.update(source=source, out=out, sizes=sizes, progress=progress)


def _worker_write(task: ShardTask) -> dict:
    """Pool task: write one shard, ticking the parent's progress bar once per image."""
    state = _worker_state
    return write_shard(state["source"], task, state["out"], state["sizes"],
                       on_sample=lambda: state["progress"].put(1))


def _run_tasks(source: Any, tasks: list[ShardTask], out: Path, sizes: SizeRule, workers: int,
               bar: tqdm) -> list[dict]:
    """Write `tasks`, in this process when one worker suffices, else in a pool of processes.

    Spawned, not forked: the parent may hold threads (torch, DALI). A worker that dies takes the
    run down with BrokenProcessPool instead of hanging it; the shards done so far stay done.
    """
    if workers <= 1 or len(tasks) <= 1:
        return [write_shard(source, task, out, sizes, on_sample=lambda: bar.update(1)) for task in tasks]
    context = mp.get_context("spawn")
    progress = context.SimpleQueue()

    def pump() -> None:
        """Move the workers' per-image ticks onto the progress bar until the sentinel."""
        while progress.get() is not None:
            bar.update(1)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_init_worker,
                                 initargs=(source, out, sizes, progress)) as pool:
            # Largest shards first so that the last ones to finish are small.
            order = sorted(tasks, key=lambda t: -len(t.items))
            return list(pool.map(_worker_write, order))
    finally:
        progress.put(None)
        pumper.join()


def _remove_foreign_shards(out: Path, records: list[dict]) -> None:
    """Delete shard files the manifest will not list: those of an earlier, different plan (more
    shards than now) and those of a planned shard that ended with no sample (all skipped)."""
    listed = {r[field] for r in records if r["samples"] for field in ("file", "index_file")}
    for path in out.iterdir():
        if SHARD_FILE.match(path.name) and path.name not in listed:
            path.unlink()


def _check_existing_manifest(out: Path, plan_digest: str, overwrite: bool) -> dict | None:
    """The manifest of an identical finished run (nothing to do), else None; refuse foreign sets."""
    path = out / MANIFEST_NAME
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("plan_digest") == plan_digest:
        return manifest
    if not overwrite:
        raise ValueError(f"{out}: already holds a shard set made from other input or settings; "
                         "choose an empty folder or pass --overwrite")
    path.unlink()
    return None


@dataclass(frozen=True)
class ShardSettings:
    """Everything that decides the content of a shard set (recorded in the manifest)."""

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    samples_per_shard: int = 1000
    shard_bytes: int | None = None
    unlisted: str = "infer"
    expect_size_px: int | None = None
    min_size_px: int = 64

    def __post_init__(self) -> None:
        if self.samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be at least 1, got {self.samples_per_shard}")
        if self.shard_bytes is not None and self.shard_bytes < 1:
            raise ValueError(f"shard_bytes must be positive or None, got {self.shard_bytes}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.unlisted not in UNLISTED_CHOICES:
            raise ValueError(f"unlisted must be one of {UNLISTED_CHOICES}, got {self.unlisted!r}")


@dataclass
class ShardPlan:
    """The planned shard set: what goes where, and a digest that identifies it."""

    source: Any
    catalog: Catalog
    settings: dict[str, Any]
    tasks: list[ShardTask]
    digest: str


def plan_dataset(source: Path, config: ShardSettings, log: Callable[[str], None]) -> ShardPlan:
    """Catalog `source`, split its patients and group the images into shards."""
    src = open_source(Path(source))
    catalog = build_catalog(src, unlisted=config.unlisted)
    if not catalog.candidates:
        raise ValueError(_nothing_to_shard(Path(source), catalog))
    log(f"{len(catalog.candidates)} images found, {catalog.rows_without_image} metadata rows without an image")
    official = None
    if catalog.official_test is not None:
        official = {c.meta.patient_id for c in catalog.candidates if c.meta.image in catalog.official_test}
    assignment = assign_splits((c.meta.patient_id for c in catalog.candidates), seed=config.seed,
                               val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                               official_test_patients=official)
    settings = {**asdict(config), "format_version": FORMAT_VERSION, "official_test_list": official is not None}
    settings_digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    tasks = plan_shards(catalog.candidates, assignment, seed=config.seed, samples_per_shard=config.samples_per_shard,
                        shard_bytes=config.shard_bytes, settings_digest=settings_digest)
    digest = hashlib.sha256("".join(t.digest for t in tasks).encode()).hexdigest()
    return ShardPlan(src, catalog, settings, tasks, digest)


def _nothing_to_shard(source: Path, catalog: Catalog) -> str:
    """Why `source` gave no image to shard, and what to do about it."""
    unlisted = [s for s in catalog.skipped if s["reason"].startswith("no metadata row")]
    if unlisted and catalog.metadata_file is None:
        return (f"{source}: nothing to shard: there is no Data_Entry_2017*.csv, and --unlisted refuse "
                f"skips all {len(unlisted)} images without a metadata row; use --unlisted infer")
    if unlisted:
        return (f"{source}: nothing to shard: none of the {len(unlisted)} images has a row in "
                f"{catalog.metadata_file} and --unlisted refuse skips them; use --unlisted infer")
    if catalog.skipped:
        first = catalog.skipped[0]
        return (f"{source}: nothing to shard: all {len(catalog.skipped)} files were refused "
                f"(e.g. {first['name']}: {first['reason']})")
    return f"{source}: no image files found (taken by suffix: {' '.join(IMAGE_SUFFIXES)}, or DICOM without one)"


def check_out_folder(source: Path, out: Path) -> None:
    """Refuses an output folder that is a file, lies below one, or is, lies in or contains the
    source folder (the shards would be written among the originals, and stale-shard cleanup
    deletes files by name there)."""
    for ancestor in (out, *out.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                where = "is a file" if ancestor == out else f"lies below {ancestor}, which is a file"
                raise ValueError(f"--out {out} {where}, not a folder; choose a folder")
            break
    src, dst = source.absolute().resolve(), out.absolute().resolve()
    if src.is_dir() and (dst == src or dst.is_relative_to(src)):
        raise ValueError(f"--out {out} is or lies inside the source folder {source}; "
                         "choose a folder outside it")
    if src != dst and src.is_relative_to(dst):
        raise ValueError(f"--out {out} contains the source {source}; choose a folder outside it")


def write_plan(plan: ShardPlan, out: Path, config: ShardSettings, *, workers: int, progress: bool,
               log: Callable[[str], None]) -> dict:
    """Write the shards of `plan` not already complete in `out`, then the manifest."""
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out)
    remove_stale_tmp(out / STATE_DIR)
    records = {t.stem: _completed(out, t) for t in plan.tasks}
    todo = [t for t in plan.tasks if records[t.stem] is None]
    log(f"{len(plan.tasks)} shards planned, {len(plan.tasks) - len(todo)} already complete")
    sizes = SizeRule(config.expect_size_px, config.min_size_px)
    with tqdm(total=sum(len(t.items) for t in todo), unit="img", disable=not progress, desc="sharding") as bar:
        for record in _run_tasks(plan.source, todo, out, sizes, workers, bar):
            records[f"{record['split']}-{record['shard']:06d}"] = record
    written = [records[t.stem] for t in plan.tasks]
    _remove_foreign_shards(out, written)
    manifest = build_manifest(written, catalog=plan.catalog,
                              source=plan.source.describe(), settings=plan.settings, plan_digest=plan.digest)
    write_manifest(out, manifest)
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    return manifest


def shard_dataset(
    source: Path,
    out: Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    samples_per_shard: int = 1000,
    shard_bytes: int | None = None,
    workers: int | None = None,
    unlisted: str = "infer",
    expect_size_px: int | None = None,
    min_size_px: int = 64,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Shard `source` into `out` (see module docstring) and return the manifest.

    `val_fraction` is taken from the train/val patients; `test_fraction` of all patients applies
    only when the source has no official test_list.txt. `unlisted` says what to do with an image
    that has no metadata row: "infer" its patient, or "refuse" it. `workers` defaults to all cores,
    fewer for small sources (`auto_workers`).
    """
    config = ShardSettings(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                           samples_per_shard=samples_per_shard, shard_bytes=shard_bytes, unlisted=unlisted,
                           expect_size_px=expect_size_px, min_size_px=min_size_px)
    out = Path(out)
    check_out_folder(Path(source), out)
    plan = plan_dataset(source, config, log)
    out.mkdir(parents=True, exist_ok=True)
    done = _check_existing_manifest(out, plan.digest, overwrite)
    if done is not None:
        log(f"{out}: already complete")
        return done
    if workers is None:
        workers = auto_workers(sum(len(t.items) for t in plan.tasks))
    manifest = write_plan(plan, out, config, workers=workers, progress=progress, log=log)
    if not manifest["counts"]["total"]:
        first = manifest["skipped"][0] if manifest["skipped"] else {"name": "?", "reason": "?"}
        raise ValueError(f"{out}: no image could be used, all {manifest['counts']['skipped']} were skipped "
                         f"(e.g. {first['name']}: {first['reason']}); {MANIFEST_NAME} lists them all")
    return manifest
