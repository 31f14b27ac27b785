"""Runs INSIDE a course's confined grading service (the formgrader container), as
``onelab_formgrader``: nbgrader's exchange and execution for staff, through the hub.

The container holds the course's nbgrader directory and nothing else of the platform: no
Docker socket, no exchange storage, no settings, no secrets but its own service token. So:

- Release, Collect, Release feedback and the formgrader's list of released assignments talk
  to the exchange service's staff API (hub/exchange_staff.py), authenticated by the service
  token; the hub decides what this course's service may do.
- Autograde runs nbgrader's own pipeline here, with execution swapped for ``RemoteExecute``:
  the notebook goes to the exchange, which runs it in OneLab's sandbox (a fresh locked-down
  container of the course image, limits from the hub's settings) and sends the outputs back.
  The gradebook and autograded/ are written here, as nbgrader writes them.

Only the standard library, nbgrader and the files mounted beside this one are used: it runs
in any course image that has nbgrader.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from nbgrader.exchange.abc import (
    Exchange,
    ExchangeCollect,
    ExchangeList,
    ExchangeReleaseAssignment,
    ExchangeReleaseFeedback,
)

from graders.execution import Execution
from graders.preprocessor import SandboxedExecute

MAX_REPLY = 256 * 1024 * 1024


def call(method: str, path: str, body: bytes | None = None,
         content_type: str = "application/gzip", timeout: float = 900) -> bytes:
    """One request to the exchange's staff API as this service; errors carry its message."""
    base = os.environ["ONELAB_EXCHANGE_URL"].rstrip("/")
    req = urllib.request.Request(f"{base}/api/staff/{path}", data=body, method=method)
    req.add_header("Authorization", f"token {os.environ['JUPYTERHUB_API_TOKEN']}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read(MAX_REPLY)
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read(65536)).get("error") or e.reason
        except ValueError:
            why = e.reason
        raise RuntimeError(f"the hub refused ({e.code}): {why}") from None
    except OSError as e:
        raise RuntimeError(f"the hub's exchange does not answer: {e}") from None


def pack_dir(folder: Path) -> bytes:
    """tar.gz of a folder's plain files (links and anything else are left out)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> None:
    """Unpack the hub's tar.gz into dest: plain files and folders, inside dest, nothing else."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar:
            rel = Path(m.name)
            if rel.is_absolute() or ".." in rel.parts or not (m.isfile() or m.isdir()):
                continue
            target = dest / rel
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            if src is not None:
                with open(target, "wb") as fh:
                    shutil.copyfileobj(src, fh)


class StaffExchange(Exchange):
    @property
    def course(self) -> str:
        if not self.coursedir.course_id:
            self.fail("no course id in this nbgrader directory's config")
        return self.coursedir.course_id

    def _path(self, kind: str, student: str, assignment: str) -> Path:
        return Path(self.coursedir.format_path(kind, student, assignment))

    def _call(self, *args: Any, **kw: Any) -> bytes:
        try:
            return call(*args, **kw)
        except RuntimeError as e:
            self.fail(str(e))
            raise


class InstructorList(StaffExchange, ExchangeList):
    def start(self) -> list[dict[str, Any]]:
        released = json.loads(self._call("GET", f"{self.course}/released"))
        wanted = self.coursedir.assignment_id
        return [{"course_id": self.course, "assignment_id": a["assignment"],
                 "status": "released", "path": "",
                 "notebooks": [{"notebook_id": n, "path": ""} for n in a["notebooks"]]}
                for a in released if not wanted or a["assignment"] == wanted]


class ReleaseAssignment(StaffExchange, ExchangeReleaseAssignment):
    def start(self) -> None:
        aid = self.coursedir.assignment_id
        src = self._path(self.coursedir.release_directory, ".", aid)
        if not src.is_dir():
            self.fail(f"{src} does not exist: generate the assignment first")
        self._call("POST", f"{self.course}/release/{aid}", pack_dir(src))
        self.log.info("Released %s of %s to learners", aid, self.course)


class Collect(StaffExchange, ExchangeCollect):
    def start(self) -> None:
        aid = self.coursedir.assignment_id
        data = self._call("GET", f"{self.course}/collect/{aid}")
        with tempfile.TemporaryDirectory(dir=self.coursedir.root, prefix=".collect-") as tmp:
            unpack(data, Path(tmp))
            for got in sorted(p for p in Path(tmp).iterdir() if p.is_dir()):
                dest = self._path(self.coursedir.submitted_directory, got.name, aid)
                ts_file = dest / "timestamp.txt"
                new_ts = (got / "timestamp.txt").read_text().strip()
                if ts_file.exists() and ts_file.read_text().strip() == new_ts:
                    continue  # already this submission
                dest.parent.mkdir(parents=True, exist_ok=True)
                old = dest.parent / f".{aid}.old"
                shutil.rmtree(old, ignore_errors=True)
                if dest.exists():
                    dest.rename(old)
                got.rename(dest)  # whole: never a half-copied submission to grade
                shutil.rmtree(old, ignore_errors=True)
                self.log.info("Collected %s of %s from %s (%s)", aid, self.course, got.name,
                              new_ts)


class ReleaseFeedback(StaffExchange, ExchangeReleaseFeedback):
    def start(self) -> None:
        aid = self.coursedir.assignment_id
        student = self.coursedir.student_id or "*"
        feedback = Path(self.coursedir.format_path(self.coursedir.feedback_directory, "x",
                                                   aid)).parent.parent
        buf = io.BytesIO()
        sent = []
        scores = self._scores(aid)
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for folder in sorted(feedback.glob(f"{student}/{aid}")):
                htmls = sorted(p for p in folder.glob("*.html") if not p.is_symlink())
                ts = folder / "timestamp.txt"
                if htmls and ts.is_file() and not ts.is_symlink():
                    for f in [ts, *htmls]:
                        tar.add(f, arcname=f"{folder.parent.name}/{f.name}", recursive=False)
                    if folder.parent.name in scores:  # the learner's score goes with it
                        data = json.dumps(scores[folder.parent.name]).encode()
                        info = tarfile.TarInfo(f"{folder.parent.name}/score.json")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                    sent.append(folder.parent.name)
        if sent:
            self._call("POST", f"{self.course}/feedback/{aid}", buf.getvalue())
        for name in sent:
            self.log.info("Feedback of %s released to %s", aid, name)


    def _scores(self, aid: str) -> dict[str, dict[str, float]]:
        """{learner: {score, max_score}} of this assignment in the course's gradebook."""
        from nbgrader.api import Gradebook, MissingEntry

        out = {}
        try:
            with Gradebook(self.coursedir.db_url) as gb:
                for sub in gb.assignment_submissions(aid):
                    out[sub.student_id] = {"score": float(sub.score),
                                           "max_score": float(sub.max_score)}
        except MissingEntry:
            pass
        return out


class RemoteExecute(SandboxedExecute):
    """nbgrader's Execute, done by the hub in OneLab's sandbox (its image and limits)."""

    def execute(self, payload: dict, files: dict[str, bytes], kernel: str,
                tests: list[int]) -> Execution:
        course = os.environ.get("ONELAB_COURSE", "")
        body = json.dumps({"notebook": payload, "kernel": kernel, "verify": tests,
                           "files": {k: base64.b64encode(v).decode() for k, v in files.items()}
                           }).encode()
        try:
            reply = json.loads(call("POST", f"{course}/execute", body, "application/json"))
        except (RuntimeError, ValueError) as e:
            return Execution("crashed", f"the grading sandbox could not run it: {e}")
        return Execution(str(reply.get("status", "crashed")), str(reply.get("reason", "")),
                         reply.get("cells") or [], float(reply.get("seconds") or 0.0),
                         str(reply.get("log", ""))[-4000:], reply.get("marks") or [],
                         reply.get("files"))  # checked where they are written (preprocessor)


def configure(c: Any) -> None:
    """For the container's nbgrader_config.py: the exchange and the autograde pipeline."""
    from graders.hook import pipeline

    c.CourseDirectory.course_id = os.environ["ONELAB_COURSE"]
    c.CourseDirectory.root = "/course"
    c.ExchangeFactory.list = "onelab_formgrader.InstructorList"
    c.ExchangeFactory.release_assignment = "onelab_formgrader.ReleaseAssignment"
    c.ExchangeFactory.collect = "onelab_formgrader.Collect"
    c.ExchangeFactory.release_feedback = "onelab_formgrader.ReleaseFeedback"
    pipeline(c, RemoteExecute)
    c.HTMLExporter.sanitize_html = True  # feedback and the formgrade view, where honoured
    # Feedback loads nothing from the internet (nbgrader's template asks cdnjs for MathJax):
    # OneLab's `feedback` (nbgrader's, plus an offline mathjax macro) is found first. nbgrader
    # always names the template `feedback`; its formgrade view sets its own template folders.
    import nbgrader

    ours = Path(__file__).resolve().parent / "templates"
    theirs = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"
    c.HTMLExporter.extra_template_basedirs = [str(ours), str(theirs)]


# -- no kernels here: the grading service runs no code of anyone's -------------------------

def _no_kernels_class() -> Any:
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
    from tornado import web

    class NoKernels(AsyncMappingKernelManager):
        """Kernels are refused: grading runs in OneLab's sandbox, never here."""

        async def start_kernel(self, *args: Any, **kwargs: Any) -> str:
            raise web.HTTPError(403, "kernels are off in the course's grading service; "
                                     "autograding runs in OneLab's sandbox")

    return NoKernels


def __getattr__(name: str) -> Any:  # NoKernels is made on first use (jupyter_server needed)
    if name == "NoKernels":
        return _no_kernels_class()
    raise AttributeError(name)


# -- operations the hub runs in here for `onelab assignment ...` (python -m onelab_formgrader)

def _api() -> Any:
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    c = Config()
    configure(c)
    return NbGraderAPI(CourseDirectory(config=c), config=c)


def _ok(result: dict, what: str) -> None:
    if not result.get("success"):
        log = (result.get("log") or "") + "\n" + (result.get("error") or "")
        lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Error" in ln or "error" in ln), lines[-1] if lines
                   else "no details")
        raise RuntimeError(f"{what} failed: {why[-400:]}")


def _replace(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    src.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def upgrade_gradebook(db: Path) -> str | None:
    """Bring a course's gradebook to the schema of the nbgrader in this image (nbgrader does
    not do it by itself; an upgraded image would otherwise fail on an old gradebook): alembic's
    own migrations, after a dated copy of the file beside it. Returns "old -> new", or None
    when there is nothing to do (no gradebook yet, already current, or one nbgrader made before
    it kept a revision, which nbgrader stamps itself)."""
    if not db.is_file():
        return None
    import sqlalchemy as sa
    from alembic.config import Config as AlembicConfig
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from nbgrader import dbutil

    url = f"sqlite:///{db}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    with dbutil._temp_alembic_ini(url) as ini:
        cfg = AlembicConfig(ini)
        head = ScriptDirectory.from_config(cfg).get_current_head()
        if current is None or current == head:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        shutil.copy2(db, db.with_name(f"{db.name}.{stamp}-before-upgrade"))
        # in a child: nbgrader's migration environment reconfigures (and silences) logging
        done = subprocess.run([sys.executable, "-m", "alembic", "-c", ini, "upgrade", "head"],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"upgrading {db.name} failed: {done.stderr.strip()[-500:]}")
    return f"{current} -> {head}"


def run_op(op: str, args: list[str]) -> Any:
    root = Path("/course")
    if op == "init":
        (root / "source").mkdir(exist_ok=True)
        return upgrade_gradebook(root / "gradebook.db")
    if op == "clear-sync":
        shutil.rmtree(root / ".sync", ignore_errors=True)
        return None
    if op == "sync":  # sources staged by the hub in .sync/<assignment>/, swapped in whole
        for aid in args:
            staged = root / ".sync" / aid
            if staged.is_dir():
                _replace(staged, root / "source" / aid)
        shutil.rmtree(root / ".sync", ignore_errors=True)
        return sorted(args)
    if op == "ready":
        Path("/tmp/onelab-ready").write_text("ready\n")
        return None
    api = _api()
    if op == "release":
        aid = args[0]
        _ok(api.generate_assignment(aid, force=True), f"generating {aid}")
        _ok(api.release_assignment(aid), f"releasing {aid}")
        return aid
    if op == "collect":
        aid = args[0]
        _ok(api.collect(aid), f"collecting {aid}")
        return sorted(p.parent.name for p in root.glob(f"submitted/*/{aid}") if p.is_dir())
    if op == "autograde":
        aid, force = args[0], "--force" in args
        out = []
        for sub in sorted(root.glob(f"submitted/*/{aid}")):
            student = sub.parent.name
            done = root / "autograded" / student / aid / "timestamp.txt"
            ts = sub / "timestamp.txt"
            if (not force and done.is_file() and ts.is_file() and
                    done.read_text().strip() == ts.read_text().strip()):
                out.append({"student": student, "status": "skipped"})
                continue
            result = api.autograde(aid, student, force=True, create=True)
            out.append({"student": student,
                        "status": "graded" if result.get("success") else "failed",
                        "error": "" if result.get("success") else
                        (result.get("error") or "")[-400:]})
        return out
    if op == "feedback":
        aid = args[0]
        _ok(api.generate_feedback(aid, force=True), "generating feedback")
        _ok(api.release_feedback(aid), "releasing feedback")
        return sorted(p.parent.name for p in root.glob(f"feedback/*/{aid}")
                      if any(p.glob("*.html")))
    if op == "scores":  # what `onelab grades export` needs: score and submission time
        from nbgrader.api import Gradebook, MissingEntry

        rows = []
        with Gradebook(api.coursedir.db_url) as gb:
            for aid in args:
                for sub in sorted(root.glob(f"submitted/*/{aid}")):
                    try:
                        s = gb.find_submission(aid, sub.parent.name)
                    except MissingEntry:
                        continue
                    ts = sub / "timestamp.txt"
                    rows.append({"assignment": aid, "learner": sub.parent.name,
                                 "score": float(s.score), "max_score": float(s.max_score),
                                 "timestamp": ts.read_text().strip()[:64] if ts.is_file()
                                 else ""})
        return rows
    raise RuntimeError(f"unknown operation {op!r}")


if __name__ == "__main__":
    import sys

    try:
        value = run_op(sys.argv[1], sys.argv[2:])
        answer: dict[str, Any] = {"value": value}
    except Exception as e:  # noqa: BLE001 - reported to the hub, which says it
        answer = {"error": f"{type(e).__name__}: {e}" if not isinstance(e, RuntimeError)
                  else str(e)}
    print("\n" + json.dumps(answer), flush=True)
