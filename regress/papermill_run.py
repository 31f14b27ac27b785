"""Run one source notebook with papermill inside a container of the course image.

The notebook is the instructor's, but it still runs like learner code: no network, a read-only
root, a non-root user, resource limits; only a scratch copy of its assignment folder is mounted.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from onelab import dockerdoor, i18n
from onelab.i18n import N_

METRICS_TAG = "metrics"

# What stopped a notebook, in words: English msgids of OneLab's catalogue (their Korean is in
# onelab/locale/ko/LC_MESSAGES/onelab.po). {cell} is the cell's number as in the source notebook
# (its place from 1, markdown cells included, the cells papermill adds not counted), as every
# other regression line counts.
MESSAGES: dict[str, str] = {
    "cell_timeout": N_("cell {cell} ran past its time limit of {limit} s and was stopped"),
    "notebook_timeout": N_(
        "the notebook ran past its time limit of {limit} s and was stopped in cell {cell}"),
    "notebook_timeout_whole": N_(
        "the notebook ran past its time limit of {limit} s and was stopped"),
    "memory": N_("cell {cell} went over the memory limit of {limit} and was stopped"),
    "memory_whole": N_("the notebook went over its memory limit of {limit} and was stopped"),
    "kernel_died": N_("the kernel died in cell {cell} (the notebook exited or crashed it)"),
}


def say(key: str, lang: str = "en", **params: Any) -> str:
    """One of MESSAGES in English ("en") or Korean ("ko")."""
    return i18n.gettext(lang)(MESSAGES[key]).format(**params)


def stop_words(stop: dict[str, Any], lang: str = "en") -> str:
    """A Run's stop facts in words."""
    return say(stop["kind"], lang, **{k: v for k, v in stop.items() if k != "kind"})


@dataclass
class Run:
    """What one papermill run gave: metrics, time, and what went wrong (if anything)."""

    notebook: str  # course/assignment/file.ipynb
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    slowest: list[tuple[int, float]] = field(default_factory=list)  # (cell, seconds)
    metrics_cell: int | None = None  # number of the cell tagged `metrics`
    output: Path | None = None
    # what stopped it, as facts: {"kind": a MESSAGES key, "limit": ..., "cell": number}
    stop: dict[str, Any] | None = None

    @property
    def stopped(self) -> str | None:
        """What stopped it, in English words."""
        return stop_words(self.stop) if self.stop else None


def papermill_args(name: str, image: str, work: Path, nb: str, params: dict[str, Any],
                   *, memory: str, cpus: float, gpus: str, timeout: int) -> list[str]:
    """A regression run: papermill in the course image, no network, read-only, non-root,
    limits; the notebook's folder (a copy) is its only mount."""
    return dockerdoor.run_args(dockerdoor.Policy(
        role="regress", image=image, name=name, entrypoint=("papermill",),
        command=(nb, f".out-{nb}", "--kernel", "python3", "--cwd", "/work",
                 "--execution-timeout", str(timeout), "--parameters_yaml", json.dumps(params),
                 "--no-progress-bar", "--no-log-output"),
        environment=(("HOME", "/scratch"), ("MPLCONFIGDIR", "/scratch/.mpl"),
                     ("IPYTHONDIR", "/scratch/.ipython"), ("JUPYTER_RUNTIME_DIR", "/scratch/.rt"),
                     ("TMPDIR", "/scratch"), ("PYTHONDONTWRITEBYTECODE", "1")),
        workdir="/work", memory=memory, cpus=cpus, pids=512, gpus=gpus,
        tmpfs=(("/scratch", "size=512m,uid=1000,gid=1000,mode=700"),),
        mounts=(dockerdoor.Mount(str(work), "/work", read_only=False),),
        stdin=True, logs=False))


def run_notebook(label: str, source: Path, image: str, params: dict[str, Any], *,
                 timeout: int, memory: str = "4G", cpus: float = 1.0, gpus: str = "none",
                 keep: Path | None = None) -> Run:
    """Execute `source` (in a copy of its folder) with `params`; say what went wrong, where."""
    run = Run(label)
    with tempfile.TemporaryDirectory(prefix="onelab-regress-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(source.parent, work, ignore=shutil.ignore_patterns(".*"))
        if os.geteuid() == 0:  # the notebook runs as uid 1000 and writes its output here
            os.chown(work, 1000, 1000)
        else:
            os.chmod(work, 0o777)
        name = f"onelab-regress-{secrets.token_hex(5)}"
        started = time.monotonic()
        res = dockerdoor.run_piped(
            papermill_args(name, image, work, source.name, params, memory=memory, cpus=cpus,
                           gpus=gpus, timeout=timeout),
            name, b"", timeout=timeout + 120, max_output=1_000_000)
        run.seconds = time.monotonic() - started
        out = work / f".out-{source.name}"
        nb = None
        if out.exists():
            try:
                nb = nbformat.read(str(out), as_version=4)
            except Exception:  # noqa: BLE001 - a half-written output says nothing useful
                nb = None
        cell = last_started(nb) if nb is not None else None
        run.stop = stop_facts(res, cell, timeout=timeout, memory=memory)
        if nb is not None:
            # the cell a limit stopped shows only the interrupt (KeyboardInterrupt): the stop's
            # words below say what happened to it
            run.problems += cell_errors(label, nb, skip=(run.stop or {}).get("cell"))
            run.metrics, run.metrics_cell = metrics(nb)
            run.slowest = slowest(nb)
            if keep is not None:
                keep.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, keep)
                run.output = keep
        if run.stop is not None:
            run.problems.append(f"{label}: {run.stopped}" + (
                f" ({cell[1]})" if cell and run.stop.get("cell") else ""))
        elif res.exit_code != 0 and not run.problems:
            tail = " ".join(res.stderr.strip().splitlines()[-3:])[:400]
            run.problems.append(f"{label}: papermill failed (exit {res.exit_code}): {tail}")
    return run


def stop_facts(res: dockerdoor.PipedRun, cell: tuple[int, str] | None, *, timeout: int,
               memory: str) -> dict[str, Any] | None:
    """What stopped the run, if a limit did: the cell's time limit (papermill's
    --execution-timeout: nbclient says CellTimeoutError and shuts the kernel down, which the
    cell shows as a KeyboardInterrupt), the whole run's (the container is killed `timeout` +
    120 s after it starts) or the memory limit (the kernel, or the container, killed)."""
    number = cell[0] if cell else None
    if res.timed_out:
        return ({"kind": "notebook_timeout", "cell": number, "limit": timeout + 120} if number
                else {"kind": "notebook_timeout_whole", "limit": timeout + 120})
    if res.oom_killed:
        return ({"kind": "memory", "cell": number, "limit": memory} if number
                else {"kind": "memory_whole", "limit": memory})
    if "CellTimeoutError" in res.stderr and number:
        return {"kind": "cell_timeout", "cell": number, "limit": timeout}
    if "DeadKernelError" in res.stderr and number:
        return {"kind": "kernel_died", "cell": number}
    return None


def last_started(nb: nbformat.NotebookNode) -> tuple[int, str] | None:
    """(number, first line) of the last cell papermill started: where the run was when it
    stopped (papermill records a start time on each cell as it starts it)."""
    found = None
    for number, cell in enumerate(_source_cells(nb), start=1):
        if (cell.get("metadata", {}).get("papermill") or {}).get("start_time"):
            found = (number, _first_line(cell.source))
    return found


def _source_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The notebook's cells without those papermill adds."""
    return [c for c in nb.cells
            if not PAPERMILL_TAGS & set(c.get("metadata", {}).get("tags") or [])]


PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def cell_errors(label: str, nb: nbformat.NotebookNode, skip: int | None = None) -> list[str]:
    """Each cell that raised: notebook, cell number as in the source notebook (1-based; the
    cells papermill adds are not counted), its first line, and the error. Cell `skip` (one a
    limit stopped: its error is only the interrupt) is left to the words for the stop."""
    out = []
    for number, cell in enumerate(_source_cells(nb), start=1):
        if number == skip:
            continue
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                line = _first_line(cell.source)
                out.append(f"{label} cell {number} ({line}): {o.get('ename')}: "
                           f"{str(o.get('evalue', ''))[:300]}")
                break
    return out


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:60]
    return "empty cell"


def metrics(nb: nbformat.NotebookNode) -> tuple[dict[str, float], int | None]:
    """The numbers the cells tagged `metrics` display as JSON, and the (last) such cell's
    number as in the source notebook."""
    found: dict[str, float] = {}
    where = None
    cells = [c for c in nb.cells
             if not PAPERMILL_TAGS & set(c.get("metadata", {}).get("tags") or [])]
    for number, cell in enumerate(cells, start=1):
        if METRICS_TAG not in (cell.get("metadata", {}).get("tags") or []):
            continue
        where = number
        for o in cell.get("outputs", []):
            data = o.get("data", {}).get("application/json")
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except ValueError:
                    continue
            if isinstance(data, dict):
                found.update({str(k): float(v) for k, v in data.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return found, where


def slowest(nb: nbformat.NotebookNode, n: int = 3) -> list[tuple[int, float]]:
    cells = [c for c in nb.cells
             if not PAPERMILL_TAGS & set(c.get("metadata", {}).get("tags") or [])]
    times = [(i, float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0))
             for i, c in enumerate(cells, start=1) if c.cell_type == "code"]
    return sorted(times, key=lambda t: -t[1])[:n]
