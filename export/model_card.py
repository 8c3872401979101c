"""The model card of an exported model: gathered from its training run and its benchmarks, stored
as ``card`` in the file's own meta.json, and rendered as markdown from that one source.

    python -m export.model_card --model M.pt --run RUN --command "cxr-sr train ..." \
        --quality "held-out NIH sample"=val.json --quality "../shared/realxray"=real.json \
        --throughput tp.json --card MODEL_CARD.md

rewrites ``M.pt`` (atomically) with the card in its meta.json and writes ``MODEL_CARD.md``; the
tests render the card again from the shipped file and compare, so the two cannot drift apart.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dist_train.precision import cpu_has_native_bf16

LIMITS = (
    "Input: 8-bit chest radiographs like NIH ChestX-ray14 PNGs (or DICOMs windowed to 8 bits), "
    "degraded as docs/contracts.md §3 describes; other degradations (noise, JPEG, other scanners' "
    "processing) were never seen in training.",
    "4x only, one channel.",
    "Trained on 288 images of 288 patients (the 312-image NIH sample less its validation split): its "
    "gain on other sites, scanners and populations is unmeasured.",
    "A PSNR-trained model: it restores what bicubic blurs, it does not invent texture; but any "
    "super-resolved image can show detail that was not in the patient. Not for diagnosis.",
)


def _machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        bf16 = "bf16 in hardware" if cpu_has_native_bf16() else "no bf16 in hardware"
        return f"{fields['Model name'].strip()}, {fields['CPU(s)'].strip()} CPUs, {bf16}"
    except (OSError, KeyError, subprocess.SubprocessError):
        return platform.processor() or platform.machine()


def validation_curve(run_dir: Path) -> tuple[list[dict[str, float]], float]:
    """([{step, wall_s, psnr_db, bicubic_psnr_db}] per validation, training wall time in s).

    Wall time is summed over the run's tensorboard files (one per process start), so the time a
    stopped run spent waiting for its resume is not counted.
    """
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    files = sorted(Path(run_dir, "tensorboard").glob("events.out.tfevents.*"),
                   key=lambda p: (int(p.name.split(".")[3]), p.name))
    offset_s, points, bicubic = 0.0, {}, None
    for path in files:
        first = last = None
        for event in LegacyEventFileLoader(str(path)).Load():
            first = event.wall_time if first is None else first
            last = event.wall_time
            for value in event.summary.value:
                if value.tag == "val/bicubic_psnr_db":
                    bicubic = value.simple_value
                if value.tag == "val/psnr_db":
                    points[event.step] = {"step": event.step, "wall_s": round(offset_s + event.wall_time - first, 1),
                                          "psnr_db": round(value.simple_value, 3)}
        if first is not None:
            offset_s += last - first
    curve = [point | {"bicubic_psnr_db": round(bicubic, 3)} for _, point in sorted(points.items())]
    return curve, round(offset_s, 1)


def _data_summary(config: dict[str, Any]) -> dict[str, Any]:
    """Images and patients (NIH names: PATIENT_FOLLOWUP) of the run's train and validation splits."""
    from dist_train.config import config_from_dict
    from dist_train.data.folder import split_paths

    train, val = split_paths(config_from_dict(config))

    def patients(paths: list[Path]) -> int:
        return len({path.stem.split("_")[0] for path in paths})
    return {"images": config["data"]["images"], "train_images": len(train), "train_patients": patients(train),
            "val_images": len(val), "val_patients": patients(val)}


def build_card(run_dir: Path, command: str, quality: dict[str, dict], throughput: dict | None,
               meta: dict[str, Any], notes: list[str] | None = None) -> dict[str, Any]:
    """The card dict from a training run, the model's meta and the benchmark JSONs."""
    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    curve, wall_s = validation_curve(run_dir)
    rows = list(csv.DictReader((Path(run_dir) / "metrics.csv").open()))
    card = {
        "name": "cxr-sr default x4",
        "date": datetime.date.today().isoformat(),
        "machine": _machine(),
        "command": command,
        "config": {section: config[section] for section in ("model", "loss", "optim", "data", "train")},
        "data": _data_summary(config),
        "steps": meta.get("training_step"),
        "wall_time_s": wall_s,
        "validation": {k: round(float(v), 4) for k, v in rows[-1].items() if k not in ("phase",)},
        "validation_curve": curve,
        # a list, not a dict: meta.json is written with sorted keys, and the card keeps the order given
        "quality": [{"images": label, "count": len(doc["images"]), "summary": doc["summary"]}
                    for label, doc in quality.items()],
        "cost": meta.get("cost", {}),
        "notes": list(notes or []),
        "limits": list(LIMITS),
    }
    if throughput is not None:
        card["throughput"] = throughput_summary(throughput)
    return card


def throughput_summary(document: dict[str, Any]) -> dict[str, Any]:
    """Best images/s of each method in a `cxr-sr bench throughput` JSON, and the header."""
    best = {method: row["images_per_s"] for method, row in document["best_batch"].items()}
    return {"images_per_s": {k: round(v, 3) for k, v in best.items()},
            "lr_px": document["settings"].get("lr_px"), "device": document["settings"].get("device"),
            "machine": _header_machine(document.get("header", {}).get("machine"))}


def _header_machine(machine: Any) -> str:
    """The bench header's machine entry as one phrase."""
    if not isinstance(machine, dict):
        return str(machine)
    return f"{machine.get('cpu')}, {machine.get('cpu_cores')} cores, torch {machine.get('torch')}"


def _fmt(summary: dict, name: str) -> str:
    value = summary.get(name)
    return f"{value['mean']:.2f} ± {value['ci95']:.2f}" if name.endswith("_db") else f"{value['mean']:.4f}"


def render_card(meta: dict[str, Any]) -> str:
    """The markdown model card, from the ``card`` entry of an exported model's meta."""
    card = meta["card"]
    model, train, data = card["config"]["model"], card["config"]["train"], card["data"]
    cost = card["cost"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"`cxr_sr_x4.pt`: the model `cxr-sr upscale` and `cxr-sr app` use when no `--model` is given. "
        f"TorchScript (docs/contracts.md §4); this card is rendered from the `card` entry of the file's own "
        f"`meta.json` (`python -m export.model_card`), and `export/models/make_default_model.sh` remakes both.",
        "",
        "## Model",
        f"- CompactSR (`model.arch={model['arch']}`): {model['features']} features, {model['blocks']} residual "
        f"blocks of two 3x3 convolutions, all at low resolution, one pixel shuffle x{model['scale']}, "
        f"bicubic global skip.",
        f"- {cost.get('parameters', 0):,} parameters; {cost.get('gmac', 0):.2f} GMAC per "
        f"{cost.get('input_px', 256)} x {cost.get('input_px', 256)} input (torch.utils.flop_counter).",
        "",
        "## Training",
        f"- Data: `{data['images']}`, 312 NIH ChestX-ray14 PA/AP radiographs (1024 x 1024, 8-bit), one per "
        f"patient: {data['train_images']} images ({data['train_patients']} patients) for training, "
        f"{data['val_images']} ({data['val_patients']} other patients) for validation.",
        f"- Command: `{card['command']}`",
        f"- {card['steps']} steps of batch {card['config']['data']['batch_size']} x "
        f"{card['config']['data']['patch_px']} px HR patches, L1, Adam lr {card['config']['optim']['lr_g']} "
        f"({card['config']['optim']['scheduler']}), precision {train['precision']}, EMA {train['ema_decay']}; "
        f"{card['wall_time_s'] / 60:.0f} min of training on {card['machine']} ({card['date']}).",
        *[f"- {note}" for note in card.get("notes", [])],
        "",
        "Validation (EMA generator, whole 1024 x 1024 images, docs/contracts.md §5) against wall time:",
        "",
        "| step | wall time, min | PSNR, dB | bicubic, dB | gain, dB |",
        "|---|---|---|---|---|",
    ]
    for point in card["validation_curve"]:
        lines.append(f"| {point['step']} | {point['wall_s'] / 60:.1f} | {point['psnr_db']:.2f} | "
                     f"{point['bicubic_psnr_db']:.2f} | {point['psnr_db'] - point['bicubic_psnr_db']:+.2f} |")
    lines += ["", "## Quality (`cxr-sr bench quality`, images the model never saw)", ""]
    for entry in card["quality"]:
        summary = entry["summary"]
        lines += [f"{entry['images']} ({entry['count']} images; mean ± 95% interval):", "",
                  "| method | PSNR, dB | SSIM | consistency, dB | HF energy ratio |", "|---|---|---|---|---|"]
        for method in ("model", "bicubic", "lanczos"):
            figures = summary[method]
            lines.append(f"| {method} | {_fmt(figures, 'psnr_db')} | {_fmt(figures, 'ssim')} | "
                         f"{_fmt(figures, 'consistency_psnr_db')} | {_fmt(figures, 'hf_energy_ratio')} |")
        lines.append("")
    if "throughput" in card:
        speed = card["throughput"]
        lines += [f"## Speed (`cxr-sr bench throughput`, {speed['lr_px']} px in, {speed['device']}, "
                  f"{speed['machine']})", "", "| method | images/s |", "|---|---|"]
        lines += [f"| {method} | {value:.3f} |" for method, value in speed["images_per_s"].items()]
        lines.append("")
    lines += ["## Limits", ""] + [f"- {limit}" for limit in card["limits"]]
    return "\n".join(lines) + "\n"


def embed_card(model_path: Path, card: dict[str, Any]) -> dict[str, Any]:
    """Rewrites the TorchScript file at ``model_path`` (atomically) with ``card`` in its meta."""
    import torch

    from data_prep.atomic import atomic_open
    from export.jit_warnings import quiet_jit_deprecation
    from export.meta import META_FILE, dumps
    from export.torchscript import load_torchscript

    module, meta = load_torchscript(model_path)
    meta = meta | {"card": card}
    with atomic_open(model_path) as handle:
        with quiet_jit_deprecation():
            torch.jit.save(module, handle, _extra_files={META_FILE: dumps(meta)})
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.model_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="TorchScript file of `cxr-sr export`")
    parser.add_argument("--run", type=Path, required=True, help="the training run it was exported from")
    parser.add_argument("--command", required=True, help="the training command, as run")
    parser.add_argument("--quality", action="append", default=[], metavar="LABEL=JSON",
                        help="a `cxr-sr bench quality` JSON and what its images are")
    parser.add_argument("--throughput", type=Path, help="a `cxr-sr bench throughput` JSON")
    parser.add_argument("--note", action="append", default=[], help="a line on how the run went (repeatable)")
    parser.add_argument("--card", type=Path, required=True, help="markdown card to write")
    args = parser.parse_args(argv)
    from data_prep.atomic import write_bytes_atomic
    from export.torchscript import load_torchscript

    quality = {}
    for item in args.quality:
        label, _, path = item.rpartition("=")
        quality[label] = json.loads(Path(path).read_text())
    throughput = json.loads(args.throughput.read_text()) if args.throughput else None
    _, meta = load_torchscript(args.model)
    embed_card(args.model, build_card(args.run, args.command, quality, throughput, meta, args.note))
    _, meta = load_torchscript(args.model)  # render what the file holds, as the tests do
    write_bytes_atomic(args.card, render_card(meta).encode("utf-8"))
    print(f"{args.model}: card embedded; {args.card} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
