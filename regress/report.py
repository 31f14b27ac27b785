"""The regression's report: JSON for machines, Markdown for people, an SVG chart of both."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from regress.probe import HINT
from regress.runner import Entry, Regression


def as_dict(r: Regression) -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": r.device, "full": r.full, "images": r.image,
        "seconds": round(r.seconds, 1), "passed": r.passed, "strict_tests": r.strict_tests,
        "weak_test_hint": HINT,
        "assignments": [{
            "course": e.course, "assignment": e.assignment, "passed": e.passed,
            "problems": e.problems, "warnings": e.warnings,
            "notebooks": [{"notebook": run.notebook, "seconds": round(run.seconds, 1),
                           "metrics": run.metrics, "slowest_cells": run.slowest,
                           # what stopped it, in words and as facts (null: nothing did)
                           "stopped": run.stopped, "stop": run.stop}
                          for run in e.runs],
            "qa": None if e.qa is None else {
                "solution": e.qa.solution, "released": e.qa.released,
                "always_equal": e.qa.probe,
                "weak_tests": [{"notebook": f.notebook, "grade_id": f.grade_id,
                                "points": f.points} for f in e.qa.fooled],
                "seconds": round(e.qa.seconds, 1)},
        } for e in r.entries],
    }


def _weak(e: Entry, notebook: str) -> int:
    """How many of this notebook's tests the always-equal answer passed."""
    return sum(f.notebook == notebook.rsplit("/", 1)[-1] for f in e.qa.fooled) if e.qa else 0


def _verdict(e: Entry) -> str:
    return "**failed**" if not e.passed else "ok, weak tests" if e.warnings else "ok"


def markdown(r: Regression) -> str:
    d = as_dict(r)
    lines = [f"# OneLab regression — {'PASSED' if r.passed else 'FAILED'}", "",
             (f"{d['when']} · device `{r.device}` · {'full' if r.full else 'small'} run · "
             f"{r.seconds:.0f} s in all"), "",
             "![metrics and times](report.svg)", "",
             ("| course | assignment | notebook | time (s) | metrics | solution | released | "
             "always-equal | verdict |"),
             "|---|---|---|---:|---|---:|---:|---:|---|"]
    for e in r.entries:
        sol, rel, eq = (f"{s[0]:g}/{s[1]:g}" if s else "–" for s in (
            (e.qa.solution, e.qa.released, e.qa.probe) if e.qa else (None, None, None)))
        for run in e.runs or [None]:
            name = run.notebook.rsplit("/", 1)[-1] if run else "–"
            secs = f"{run.seconds:.1f}" if run else "–"
            mets = ", ".join(f"{k} {v:.4g}" for k, v in sorted(run.metrics.items())) if run else ""
            lines.append(f"| {e.course} | {e.assignment} | {name} | {secs} | {mets} | {sol} | "
                         f"{rel} | {eq} | {_verdict(e)} |")
    problems = [p for e in r.entries for p in e.problems]
    if problems:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in problems]
    warnings = [w for e in r.entries for w in e.warnings]
    if warnings or (r.strict_tests and any(e.qa and e.qa.fooled for e in r.entries)):
        lines += ["", "## Tests an always-equal answer passes", "",
                  (f"Hint: {HINT}. Listed here as warnings; `onelab regress --strict-tests` "
                  "makes them failures."), ""] + [f"- {w}" for w in warnings]
    return "\n".join(lines) + "\n"


def svg(r: Regression) -> str:
    """Horizontal bars: each notebook's run time, with its metrics written beside it."""
    runs = [(run, e.passed, _weak(e, run.notebook)) for e in r.entries for run in e.runs]
    width, row, left = 900, 26, 330
    height = 50 + row * max(1, len(runs))
    longest = max([run.seconds for run, _, _ in runs] + [1.0])
    scale = (width - left - 260) / longest
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">'),
             (f'<text x="10" y="20" font-size="14" font-weight="bold">Notebook run time (s) and '
             f'metrics — device {escape(r.device)}</text>')]
    for i, (run, ok, weak) in enumerate(runs):
        y = 40 + i * row
        w = max(1.0, run.seconds * scale)
        colour = "#3b82f6" if ok else "#dc2626"
        mets = ", ".join(f"{k} {v:.3g}" for k, v in sorted(run.metrics.items()))
        parts += [f'<text x="10" y="{y + 14}">{escape(run.notebook[-48:])}</text>',
                  (f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                  f'fill="{colour}"/>'),
                  f'<text x="{left + w + 6:.1f}" y="{y + 14}">{run.seconds:.1f} s  '
                  f'{escape(mets)}'
                  + (f'<tspan fill="#d97706"> · {weak} weak test{"s" * (weak > 1)}</tspan>'
                     if weak else '') + '</text>']
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write(r: Regression, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(as_dict(r), indent=1, ensure_ascii=False))
    (out_dir / "report.md").write_text(markdown(r), encoding="utf-8")
    (out_dir / "report.svg").write_text(svg(r), encoding="utf-8")
    return out_dir / "report.md"
