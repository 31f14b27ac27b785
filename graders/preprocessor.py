"""nbgrader's autograde pipeline with one step swapped: execution happens in the sandbox.

Everything else stays nbgrader's own (ClearOutput, OverwriteCells from the gradebook's source
copy, LimitOutput, SaveAutoGrades, late penalties...), so scores for honest work are exactly
nbgrader's and `autograded/` and `gradebook.db` are what `nbgrader autograde` writes. Only
outputs and execution counts are taken from the sandbox's reply, checked; the notebook's
sources and metadata are the grader's own copy.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import secrets
import stat
import string
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool, Dict, Integer, Unicode

from graders.execution import Execution

OUTPUT_TYPES = {"stream", "display_data", "execute_result", "error"}


def is_test_cell(cell: NotebookNode) -> bool:
    """An autograder test: a graded code cell the learner does not write."""
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


def _clean_output(out: Any) -> NotebookNode | None:
    """An output from the sandbox, if it has the shape of one; anything else is dropped."""
    if not isinstance(out, dict) or out.get("output_type") not in OUTPUT_TYPES:
        return None
    kind = out["output_type"]
    if kind == "stream":
        name = out.get("name") if out.get("name") in ("stdout", "stderr") else "stdout"
        text = out.get("text", "")
        text = "".join(text) if isinstance(text, list) else str(text)
        return new_output("stream", name=name, text=text)
    if kind == "error":
        tb = out.get("traceback", [])
        return new_output("error", ename=str(out.get("ename", "")), evalue=str(out.get("evalue", "")),
                          traceback=[str(t) for t in tb] if isinstance(tb, list) else [str(tb)])
    data = out.get("data", {})
    if not isinstance(data, dict):
        return None
    data = {str(k): v for k, v in data.items() if isinstance(v, (str, list, dict))}
    if kind == "execute_result":
        count = out.get("execution_count")
        return new_output("execute_result", data=data,
                          execution_count=count if isinstance(count, int) else None)
    return new_output("display_data", data=data)


def N_(message: str) -> str:
    """Marks a message for OneLab's catalogue (onelab/i18n.py): this module also runs in the
    course's grading service, which has nbgrader (and so Babel) but not the onelab package."""
    return message


# What stopped a cell or a notebook, in words: English msgids of OneLab's catalogue, whose
# Korean is in onelab/locale/ko/LC_MESSAGES/onelab.po. {cell} is the cell's number as the
# learner sees it: its place in the notebook counted from 1, markdown cells included (as
# `onelab regress` counts). The runner's English "reason" (graders/incontainer.py STOP_EN) is
# the same sentences; tests/unit/test_stop_messages.py keeps them equal.
STOP_MESSAGES: dict[str, str] = {
    "cell_timeout": N_("cell {cell} ran past its time limit of {limit} s and was stopped"),
    "cell_timeout_killed": N_(
        "cell {cell} ran past its time limit of {limit} s and was stopped; its kernel did not "
        "answer the interrupt, so the cells after it did not run"),
    "notebook_timeout": N_(
        "the notebook ran past its time limit of {limit} s and was stopped in cell {cell}; the "
        "cells after it did not run"),
    "memory": N_(
        "cell {cell} went over the memory limit of {limit} and was stopped; the cells after it "
        "did not run"),
    "kernel_died": N_(
        "the kernel died in cell {cell}: the notebook exited it, crashed it, or went over its "
        "memory limit; the cells after it did not run"),
    # the whole grading container stopped (graders/sandbox.py): no cell to name
    "notebook_timeout_whole": N_(
        "the notebook ran past its time limit of {limit} s and was stopped"),
    "memory_whole": N_("the notebook went over its memory limit of {limit} and was stopped"),
    # on a test cell that never ran, {why} being one of the above
    "test_not_run": N_("this test did not run: {why}"),
}
# the kinds the runner puts on a cell ("stop": {"kind", "limit"}); the others are the host's
CELL_STOPS = ("cell_timeout", "cell_timeout_killed", "notebook_timeout", "memory", "kernel_died")


def locale_dir() -> Path:
    """Where OneLab's catalogue is: $ONELAB_LOCALE_DIR (the grading service gets its own copy,
    hub/formgrader.py), else the onelab package's beside this one (on the host)."""
    return Path(os.environ.get("ONELAB_LOCALE_DIR")
                or Path(__file__).resolve().parents[1] / "onelab" / "locale")


@functools.cache
def catalogue(lang: str, directory: Path) -> dict[str, str]:
    """{English msgid: translation} of the catalogue's .po in `directory`, as onelab.i18n reads
    it (fuzzy and empty entries left out); {} for English or without the file (then the words
    stay English)."""
    path = directory / lang / "LC_MESSAGES" / "onelab.po"
    if lang == "en" or not path.is_file():
        return {}
    from babel.messages.pofile import read_po  # nbgrader's own dependency (jupyterlab-server)

    with path.open("rb") as fh:
        cat = read_po(fh, locale=lang, domain="onelab")
    return {m.id: m.string for m in cat
            if isinstance(m.id, str) and m.id and isinstance(m.string, str) and m.string
            and not m.fuzzy}


def translate(english: str, lang: str) -> str:
    return catalogue(lang, locale_dir()).get(english, english)


def stop_words(kind: str, lang: str = "en", **params: Any) -> str:
    """One of STOP_MESSAGES in English ("en") or Korean ("ko")."""
    return translate(STOP_MESSAGES[kind], lang).format(**params)


def for_learners(english: str) -> str:
    """A sentence as learners read it in a graded notebook or its feedback: Korean first, then
    English, when it is one of STOP_MESSAGES (or starts with one); else as it is."""
    ko = korean(english)
    return f"{ko} / {english}" if ko else english


def korean(english: str) -> str | None:
    """The Korean of an English sentence made from STOP_MESSAGES (a reason may come as text,
    e.g. from graders/sandbox.py or the course's grading service), or None."""
    for en in STOP_MESSAGES.values():
        ko = translate(en, "ko")
        if ko == en:
            continue  # no catalogue here: no Korean
        pattern = "".join(re.escape(text) + (f"(?P<{name}>.+?)" if name else "")
                          for text, name, _, _ in string.Formatter().parse(en))
        m = re.fullmatch(pattern, english, re.DOTALL)
        if m:
            params = {k: korean(v) or v for k, v in m.groupdict().items()}
            return ko.format(**params)
    return None


def human_bytes(n: int) -> str:
    """A memory limit as people write it: 512 MiB, 1.5 GiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def cell_stops(run: Execution) -> list[tuple[int, str, str]]:
    """(cell index, kind, English words) for each cell the runner says a limit stopped, in
    order; a stop of any other shape is ignored (the reply is only as sound as the image)."""
    out: list[tuple[int, str, str]] = []
    for i, c in enumerate(run.cells):
        stop = c.get("stop") if isinstance(c, dict) else None
        if not isinstance(stop, dict) or stop.get("kind") not in CELL_STOPS:
            continue
        kind, limit = stop["kind"], stop.get("limit")
        if isinstance(limit, bool) or not (isinstance(limit, int) or
                                           (limit is None and kind == "kernel_died")):
            continue
        shown = human_bytes(limit) if kind == "memory" and limit is not None else limit
        out.append((i, kind, stop_words(kind, cell=i + 1, limit=shown)))
    return out


def run_reason(run: Execution) -> str:
    """Why the run ended early, in English words: from the runner's stop fact on the cell where
    it ended when there is one (its own "reason" says the same; the words are made here)."""
    ended = [words for _, kind, words in cell_stops(run) if kind != "cell_timeout"]
    return ended[-1] if run.status != "ok" and ended else run.reason


def grading_error(reason: str) -> NotebookNode:
    return new_output("error", ename="OneLabGradingError", evalue=reason,
                      traceback=[f"OneLabGradingError: {reason}"])


def merge(nb: NotebookNode, run: Execution) -> None:
    """Put the sandbox's outputs into the grader's notebook. A test cell that did not run
    (the kernel died or exited, time ran out, the container crashed) or did not run as written
    (the guard saw tampering, or other code ran in its place) gets an error output, so it earns
    nothing: stock nbgrader counts a test without an error as passed. A cell a limit stopped
    says so, in words, under its outputs."""
    cells = run.cells if len(run.cells) == len(nb.cells) else []
    stops = {i: words for i, _, words in cell_stops(run)} if cells else {}
    not_run = stop_words("test_not_run", why=run_reason(run) or "this test cell did not run")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        got = cells[i] if cells else {}
        outs = [o for o in map(_clean_output, got.get("outputs", []) or []) if o is not None]
        cell.outputs = outs
        if i in stops:
            cell.outputs.append(new_output("stream", name="stderr",
                                           text=f"\n[OneLab: {for_learners(stops[i])}]\n"))
        count = got.get("execution_count")
        cell.execution_count = count if isinstance(count, int) else None
        if not is_test_cell(cell):
            continue
        if not got.get("executed"):
            cell.outputs.append(grading_error(for_learners(not_run)))
        elif not got.get("verified"):
            why = got.get("why") if isinstance(got.get("why"), str) else ""
            cell.outputs.append(grading_error(why or "this test did not run as written"))
        elif got.get("completed") is False:
            # It raised, whatever the kernel reported: show nbgrader an error if it hid one.
            if not any(o.output_type == "error" for o in cell.outputs):
                cell.outputs.append(grading_error(
                    "this test did not finish: one of its statements raised an error, and the "
                    "notebook kept the error from being shown"))
        elif got.get("completed") is True:
            cell.outputs = attested_results(cell.outputs, got.get("value"), cell.execution_count)


def _number(text: Any) -> bool:
    try:
        float("".join(text) if isinstance(text, list) else str(text))
    except (TypeError, ValueError):
        return False
    return True


def attested_results(outputs: list, value: Any, count: int | None) -> list:
    """A finished test cell's displayed result (nbgrader's partial credit) as the guard
    recorded it, not as the kernel reported it: a number is the recorded number; nothing
    recorded is no result; any other value keeps its display only if that is not a number."""
    value = value if isinstance(value, str) else "-"
    number = value[2:] if value.startswith("n:") else None
    kept, shown = [], False
    for o in outputs:
        text = o.get("data", {}).get("text/plain", "") if o.output_type == "execute_result" else ""
        text = "".join(text) if isinstance(text, list) else text
        if o.output_type != "execute_result":
            kept.append(o)
        elif number is not None and not shown and text == number:
            kept.append(o)  # the kernel showed what was recorded: keep its display as it is
            shown = True
        elif value.startswith("o:") and not _number(text):
            kept.append(o)
    if number is not None and not shown:
        kept.append(new_output("execute_result", data={"text/plain": number},
                               execution_count=count))
    return kept


_HTML_TAG = re.compile(r"<[A-Za-z!/?]")
_ACTIVE_SVG = re.compile(r"<\s*(script|foreignObject|iframe|object|embed)|\son\w+\s*=|"
                         r"javascript:|href\s*=\s*[\"']?\s*data:", re.IGNORECASE)


def inert(nb: NotebookNode) -> None:
    """Make what the learner wrote or printed inert for whoever views it as HTML.

    The graded notebook is what staff open in the formgrader (on the hub's own origin, with
    their session) and what feedback is made from; nbgrader's formgrade template renders
    markdown and raw cells and HTML outputs as they are. So here: scripts, event handlers and
    javascript: links in markdown, raw cells and HTML/Markdown/SVG outputs are escaped by
    nbconvert's own sanitizer (bleach); JavaScript outputs are dropped. Plain formatting,
    images and plots stay. The submitted files themselves are never touched."""
    from nbconvert.filters import clean_html

    for cell in nb.cells:
        if cell.cell_type == "raw" or (cell.cell_type == "markdown" and
                                       _HTML_TAG.search(cell.source or "")):
            cell.source = clean_html(cell.source)
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not isinstance(data, dict):
                continue
            data.pop("application/javascript", None)
            for mime in ("text/html", "text/markdown"):
                if mime in data:
                    text = data[mime]
                    data[mime] = clean_html("".join(text) if isinstance(text, list) else text)
            svg = data.get("image/svg+xml")
            if svg is not None:
                text = "".join(svg) if isinstance(svg, list) else str(svg)
                if _ACTIVE_SVG.search(text):
                    data["image/svg+xml"] = clean_html(text)
            if not data:
                data["text/plain"] = "[OneLab: a script output was removed]"


MAX_FILES = 32 * 1024 * 1024  # a submission's other files, in all


def submission_files(directory: Path, skip: set[str]) -> dict[str, bytes]:
    """The submission's files other than the notebooks themselves (data a notebook reads);
    links are never followed."""
    out: dict[str, bytes] = {}
    total = 0
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if not path.is_file() or path.is_symlink() or rel in skip or rel.startswith("."):
            continue
        size = path.stat().st_size
        if total + size > MAX_FILES:
            break
        total += size
        out[rel] = path.read_bytes()
    return out


# What a notebook writes while graded comes back (graders/incontainer.py collects it, with the
# same caps) and lands beside the graded notebook, as stock nbgrader leaves it there.
MAX_WRITTEN_FILES = 100
MAX_WRITTEN_BYTES = 20 * 1024 * 1024  # well below what a reply may hold (sandbox.MAX_REPLY)
# Never replaced by what a notebook wrote: nbgrader's own record of the submission time
# (resumable runs compare it), and the assignment's notebooks (top level), this one included.
KEPT_NAMES = ("timestamp.txt",)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def safe_relpath(rel: Any) -> str | None:
    """`rel` if it is a plain relative path that stays inside its folder, else None: no
    absolute path, no `..` or `.`, no empty or hidden part, no backslash or control character."""
    if not isinstance(rel, str) or not rel or len(rel) > 1024 or _CONTROL.search(rel):
        return None
    parts = rel.split("/")
    if len(parts) > 16 or any(not p or p.startswith(".") or len(p.encode()) > 255
                              for p in parts):
        return None  # "", ".", "..", hidden names, and a leading "/" (an empty first part)
    return rel


def _replaceable(parts: list[str]) -> bool:
    """Whether a file the notebook wrote may take this place (see KEPT_NAMES)."""
    return bool(parts) and not (len(parts) == 1 and (parts[0] in KEPT_NAMES or
                                                    parts[0].endswith(".ipynb")))


def written_files(files: Any, max_files: int = MAX_WRITTEN_FILES,
                  max_bytes: int = MAX_WRITTEN_BYTES) -> tuple[dict[str, bytes], list[str]]:
    """The files a sandbox run says the notebook wrote, checked for shape and caps (the runner
    caps them too, but its reply is only as trustworthy as the image it ran in).
    Returns ({relpath: bytes}, [notes for a person])."""
    out: dict[str, bytes] = {}
    notes: list[str] = []
    if not isinstance(files, dict):
        return out, notes
    given = files.get("written")
    left_out = [str(n) for n in files.get("left_out") or [] if isinstance(n, str)][:20]
    count = files.get("left_out_count")
    count = count if isinstance(count, int) and count >= len(left_out) else len(left_out)
    unsafe: list[str] = []
    kept: list[str] = []  # names it may not replace
    total = 0
    for rel, b64 in sorted(given.items()) if isinstance(given, dict) else []:
        name = safe_relpath(rel)
        try:
            data = base64.b64decode(b64, validate=True) if isinstance(b64, str) else None
        except (binascii.Error, ValueError):
            data = None
        if name is None or data is None:
            unsafe.append(repr(rel)[:80])
            continue
        if not _replaceable(name.split("/")):
            kept.append(name)
            continue
        if len(out) >= max_files or total + len(data) > max_bytes:
            if len(left_out) < 20:
                left_out.append(name)
            count += 1
            continue
        total += len(data)
        out[name] = data
    if count:
        notes.append(f"{count} file(s) the notebook wrote were not kept (at most {max_files} "
                     f"files, {max_bytes // (1024 * 1024)} MiB in all): "
                     + ", ".join(left_out) + (", ..." if count > len(left_out) else ""))
    if unsafe:
        notes.append("file(s) with unsafe names were not kept: " + ", ".join(unsafe[:20]))
    if kept:
        notes.append("file(s) the notebook wrote were not kept, as they would replace the "
                     "notebooks or timestamp.txt: " + ", ".join(kept[:20]))
    return out, notes


def _replace_file(root_fd: int, parts: list[str], data: bytes) -> bool:
    """Write one file under the open folder `root_fd`, never through a link: each folder is
    opened with O_NOFOLLOW from the one before, and the file goes in by rename, so a link or a
    hard link already there is replaced, never written through. False if a folder on the way
    is not a folder, or the name is taken by anything but a regular file."""
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                return False  # a link or a file where a folder should be
            os.close(fd)
            fd = sub
        name = parts[-1]
        try:
            if not stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                return False
        except FileNotFoundError:
            pass
        tmp = f".onelab-{secrets.token_hex(8)}.tmp"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                      dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as fh:
                fh.write(data)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            os.unlink(tmp, dir_fd=fd)
            raise
        return True
    finally:
        os.close(fd)


def write_files(directory: Path, files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """Put what the notebook wrote into `directory` (where nbgrader writes the graded
    notebook), as stock nbgrader's kernel would have left it there. Only safe relative paths,
    never through a link, never over the assignment's notebooks or timestamp.txt.
    Returns (written, refused)."""
    written: list[str] = []
    refused: list[str] = []
    root_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for rel, data in sorted(files.items()):
            name = safe_relpath(rel)
            parts = name.split("/") if name else []
            if not _replaceable(parts):
                refused.append(rel)
            elif name is not None and _replace_file(root_fd, parts, data):
                written.append(name)
            else:
                refused.append(rel)
    finally:
        os.close(root_fd)
    return written, refused


def tampered(run: Execution, tests: list[int]) -> list[str]:
    """Why test cells that ran did not count (the guard saw tampering, or other code ran in
    their place): a cheat attempt earns nothing for them, and a person should know."""
    out = []
    for i in tests:
        c = run.cells[i] if i < len(run.cells) and isinstance(run.cells[i], dict) else {}
        if c.get("executed") and c.get("verified") is False and isinstance(c.get("why"), str):
            out.append(f"test cell {i + 1}: {c['why'][:200]}")
    return out[:5]


def notice(nb: NotebookNode, text: str) -> None:
    """A note for whoever reads the graded notebook or its feedback, on the last code cell that
    ran and is not a test (stdout: nbgrader takes stderr on a test as a failure)."""
    for cell in reversed(nb.cells):
        if cell.cell_type == "code" and not is_test_cell(cell) and cell.execution_count:
            cell.outputs.append(new_output("stream", name="stdout", text=f"\n[OneLab: {text}]\n"))
            return


class RestoreSourceMetadata(NbGraderPreprocessor):
    """Make every cell's nbgrader metadata the source's, before nbgrader's own sanitizing.

    A submission may claim a solution cell is graded, change points, unlock a test or invent
    grade ids; nbgrader's OverwriteCells would then crash or (for flags it does not restore)
    trust the claim. Here a cell whose grade_id the gradebook knows gets the source's flags and
    points; a cell with an unknown grade_id loses its nbgrader metadata and is ordinary code.
    """

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        from nbgrader.api import Gradebook, MissingEntry

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            try:
                source = gb.find_notebook(info["notebook"], info["assignment"])
            except MissingEntry:
                return nb, resources
            points = {c.name: c.max_score for c in source.grade_cells}
            solutions = {c.name for c in source.solution_cells}
            locked = {c.name: bool(c.locked) for c in source.source_cells}
            tasks = {c.name for c in source.task_cells}
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader")
            if meta is None:
                continue
            gid = meta.get("grade_id") if isinstance(meta, dict) else None
            if not isinstance(gid, str) or gid not in locked:
                del cell.metadata["nbgrader"]
                continue
            new = {"grade_id": gid, "schema_version": 3, "solution": gid in solutions,
                   "grade": gid in points, "locked": locked[gid], "task": gid in tasks}
            if gid in points:
                new["points"] = points[gid]
            for k in ("checksum", "cell_type"):
                if k in meta:
                    new[k] = meta[k]
            cell.metadata["nbgrader"] = new
        return nb, resources


class SandboxedExecute(NbGraderPreprocessor):
    """Replaces nbgrader's Execute in Autograde.autograde_preprocessors."""

    image = Unicode(help="Course image the notebook runs in.").tag(config=True)
    limits = Dict(help="The grading limits (onelab.settings.GradingLimits: memory, cpus, pids, "
                  "scratch, cell_timeout, notebook_timeout, max_output_bytes, gpus); any left "
                  "out take their defaults.").tag(config=True)
    cpuset = Unicode("", help="Cores to pin the container to (set per worker).").tag(config=True)
    run = Unicode("", help="Label of the grading run (to wait for its containers).").tag(config=True)
    prestart = Bool(False, help="Start the next submission's container while this one runs."
                    ).tag(config=True)
    report_dir = Unicode("", help="Where to write one JSON report per notebook.").tag(config=True)
    max_written_files = Integer(MAX_WRITTEN_FILES, help="Files a notebook writes while graded "
                                "that are kept beside the graded notebook, at most."
                                ).tag(config=True)
    max_written_bytes = Integer(MAX_WRITTEN_BYTES, help="Bytes of those files, in all, at most."
                                ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        path = Path(resources.get("metadata", {}).get("path") or ".")
        files = submission_files(
            path, skip={p.name for p in path.glob("*.ipynb")}) if path.is_dir() else {}
        kernel = (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
        payload = json.loads(json.dumps(nb))  # a plain copy; the grader keeps its own nb
        for cell in payload["cells"]:
            if cell.get("cell_type") == "code":
                cell["outputs"] = []
        tests = [i for i, c in enumerate(nb.cells) if is_test_cell(c)]
        unreadable = (nb.metadata.get("onelab") or {}).get("unreadable")
        if unreadable:  # a stand-in for a notebook nobody could read (graders.grade): not run
            run = Execution("error", f"the submitted notebook could not be read: "
                                     f"{unreadable}")
        else:
            run = self.execute(payload, files, kernel, tests)
        merge(nb, run)
        inert(nb)
        if run.status != "ok":
            self.log.warning("Sandbox: %s (%s)", run.status, run_reason(run))
        # cells stopped by their time limit while the notebook went on: a person should know
        stopped = [words for _, kind, words in cell_stops(run) if kind == "cell_timeout"]
        for words in stopped:
            self.log.warning("Sandbox: %s", words)
        written, notes = self._keep_files(nb, resources, run)
        self._report(resources, run, written, stopped + tampered(run, tests) + notes)
        return nb, resources

    def _keep_files(self, nb: NotebookNode, resources: dict,
                    run: Execution) -> tuple[list[str], list[str]]:
        """Write what the notebook wrote beside the graded notebook: nbgrader's Execute runs
        the kernel in the folder of the notebook it grades (resources' metadata path; in the
        autograde pass that is autograded/<student>/<assignment>/, the converter's build
        directory), so that is where stock nbgrader leaves them. Returns (written, notes)."""
        files, notes = written_files(run.files, self.max_written_files, self.max_written_bytes)
        where = (resources.get("metadata") or {}).get("path")
        written: list[str] = []
        if files and where and Path(where).is_dir():
            written, refused = write_files(Path(where), files)
            if refused:
                notes.append("file(s) the notebook wrote were not kept, as a link or a folder "
                             "is in their place: " + ", ".join(refused[:20]))
        for note in notes:
            self.log.warning("Sandbox: %s", note)
            notice(nb, note)
        if written:
            self.log.info("Kept %d file(s) the notebook wrote: %s", len(written),
                          ", ".join(written[:20]))
        return written, notes

    def execute(self, payload: dict, files: dict[str, bytes], kernel: str,
                tests: list[int]) -> Execution:
        """Run the notebook in a fresh sandbox container of self.image, here."""
        from graders import sandbox
        from onelab.settings import GradingLimits

        return sandbox.execute(payload, files, self.image, GradingLimits(**self.limits),
                               kernel=kernel, verify=tests, prestart=self.prestart,
                               cpuset=self.cpuset, run=self.run)

    def _report(self, resources: dict, run: Execution, written: list[str],
                flags: list[str]) -> None:
        """One JSON report per notebook. A run that went through but needs a person's eyes
        (a test cell that did not run as written, files left out) is "flagged", with why:
        `onelab grade` lists every report that is not "ok" in its summary."""
        if not self.report_dir:
            return
        info = resources.get("nbgrader", {})
        d = Path(self.report_dir) / str(info.get("student", "unknown"))
        d.mkdir(parents=True, exist_ok=True)
        status, reason = run.status, run_reason(run)
        if status == "ok" and flags:
            status, reason = "flagged", "; ".join(flags)
        (d / f"{info.get('notebook', 'notebook')}.json").write_text(json.dumps({
            "status": status, "reason": reason, "seconds": round(run.seconds, 2),
            "cells_run": sum(1 for c in run.cells if c.get("executed")),
            "timeline": run.marks,
            "files_written": written, "notes": flags,
            "stderr": run.log[-2000:],
        }, indent=1))
