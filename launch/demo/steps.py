"""Running the demo's steps: progress on the console, one log file each, a marker when complete.

A step is complete when its marker ``OUT/.demo/steps/NAME.json`` exists with the current settings
digest; the marker is written atomically (``data_prep.atomic``) only after the step succeeded, so
an interrupted step simply runs again (the commands it calls resume where they can). Once one
step runs, every later step runs too, since its inputs may have changed. A failing step raises
``StepFailed``, whose message names the step and its log.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from data_prep.atomic import atomic_open


class StepFailed(RuntimeError):
    """A step did not complete; ``str()`` names it and the log file to read."""

    def __init__(self, step: str, log: Path, problem: str):
        super().__init__(f"step '{step}' failed: {problem}; see {log}")
        self.step, self.log = step, log


def marker_path(out: Path, name: str) -> Path:
    """Where step ``name`` of the demo writing to ``out`` leaves its completion marker."""
    return Path(out) / ".demo" / "steps" / f"{name}.json"


def read_marker(out: Path, name: str) -> dict[str, Any] | None:
    """The marker of step ``name`` (digest, seconds, finished, results) whatever its digest; None if absent."""
    try:
        return json.loads(marker_path(out, name).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class StepContext:
    """What a step's action gets: where to write, its log, and a way to run commands."""

    name: str
    out: Path
    log_path: Path
    console: TextIO
    results: dict[str, Any] = field(default_factory=dict)  # saved in the marker: summaries for the report

    def say(self, message: str) -> None:
        """A progress line on the console, also kept in the log."""
        print(f"    {message}", file=self.console, flush=True)
        with open(self.log_path, "a") as log:
            log.write(f"[demo] {message}\n")

    def run(self, argv: list[str], echo: str | None = None, env: dict[str, str] | None = None) -> None:
        """Runs a command with stdout and stderr appended to the log; lines matching ``echo`` are shown.

        Raises StepFailed on a non-zero exit, with the last line the command printed.
        """
        pattern = re.compile(echo) if echo else None
        with open(self.log_path, "a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       bufsize=1, env={**os.environ, **(env or {})})
            last, last_error = "", ""
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                if re.search(r"[A-Za-z0-9]", line):  # not a ===== rule
                    last = line.strip()
                if re.search(r"\b\w*(Error|error)\b:", line):
                    last_error = line.strip()
                if pattern is not None and pattern.search(line):
                    print(f"    {line.rstrip()}", file=self.console, flush=True)
            code = process.wait()
        if code != 0:
            shown = ["cxr-sr", *argv[3:5]] if argv[1:3] == ["-m", "launch"] else [Path(argv[0]).name, *argv[1:3]]
            said = last_error or last
            raise StepFailed(self.name, self.log_path, f"`{' '.join(shown)} ...` exited with {code}"
                             + (f" ({said[:200]})" if said else ""))


@dataclass(frozen=True)
class Step:
    """One stage of the demo: a name (marker and log file), what it does, and the action."""

    name: str
    title: str
    action: Callable[[StepContext], None]


class StepRunner:
    """Runs steps in order, reusing those completed under the same settings digest."""

    def __init__(self, out: Path, digest: str, console: TextIO = sys.stderr):
        self.out, self.digest, self.console = Path(out), digest, console
        self.log_dir = self.out / "logs"

    def completed(self, name: str) -> dict[str, Any] | None:
        """The marker of a step completed under the current settings, else None.

        A step that skipped its work (something it needs was missing, like the C++ build) is not
        complete: the next run tries it again, as its message tells the user.
        """
        record = read_marker(self.out, name)
        if record is None or record.get("digest") != self.digest or "skipped" in record.get("results", {}):
            return None
        return record

    def _write_marker(self, name: str, record: dict[str, Any]) -> None:
        path = marker_path(self.out, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w", durable=True) as handle:
            json.dump(record, handle, indent=2, default=str)

    def run_all(self, steps: list[Step]) -> None:
        rerun_from_here = False
        for number, step in enumerate(steps, 1):
            header = f"[{number}/{len(steps)}] {step.name}: {step.title}"
            record = None if rerun_from_here else self.completed(step.name)
            if record is not None:
                print(f"{header} -- complete from an earlier run, reused", file=self.console, flush=True)
                continue
            rerun_from_here = True
            print(header, file=self.console, flush=True)
            self._run_one(step)

    def _run_one(self, step: Step) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        context = StepContext(step.name, self.out, self.log_dir / f"{step.name}.log", self.console,
                              results={})
        context.log_path.write_text(f"# cxr-sr demo step '{step.name}': {step.title}\n")
        marker_path(self.out, step.name).unlink(missing_ok=True)
        start_s = time.perf_counter()
        try:
            step.action(context)
        except StepFailed:
            raise
        except Exception as exc:  # an in-process step: the traceback goes to its log, one line here
            with open(context.log_path, "a") as log:
                traceback.print_exc(file=log)
            raise StepFailed(step.name, context.log_path, f"{type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - start_s
        self._write_marker(step.name, {
            "step": step.name, "digest": self.digest, "seconds": round(seconds, 2),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "results": context.results})
        print(f"    done in {seconds:.1f} s", file=self.console, flush=True)
