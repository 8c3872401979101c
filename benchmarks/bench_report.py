"""What every benchmark result carries (machine, date, command) and how it is written out."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from data_prep.atomic import write_bytes_atomic


def machine() -> dict[str, Any]:
    """CPU, cores, GPU (if any) and library versions, for results that can be compared later."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {"cpu": cpu, "cpu_cores": cores, "python": platform.python_version(),
                            "torch": torch.__version__, "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def header() -> dict[str, Any]:
    """Machine, UTC date and the command line that produced a result."""
    return {"machine": machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "cxr-sr " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith("cxr-sr")
            else " ".join(shlex.quote(a) for a in sys.argv)}


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table; floats with 3 significant decimals."""
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def emit(document: dict[str, Any], table: str, json_path: Path | None, markdown_path: Path | None) -> None:
    """JSON to `json_path` or stdout; the table to stderr and, if asked, to `markdown_path`."""
    text = json.dumps(document, indent=2, default=str)
    if json_path is None:
        print(text)
    else:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(json_path, (text + "\n").encode())
    print(table, file=sys.stderr)
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        meta = document["header"]
        write_bytes_atomic(markdown_path, (f"Machine: {describe_machine(meta['machine'])}\n\nDate: {meta['date']}\n\n"
                                           f"Command: `{meta['command']}`\n\n{table}\n").encode())


def describe_machine(info: dict[str, Any]) -> str:
    """One line: CPU and cores, GPU if any, torch version."""
    gpu = f", GPU {info['gpu']} ({info['gpu_memory_gb']} GB)" if "gpu" in info else ", no GPU"
    return f"{info['cpu']} ({info['cpu_cores']} cores){gpu}, torch {info['torch']}, Python {info['python']}"
