"""The exchange's staff side: what a course's confined grading service asks of the hub.

The formgrader container (hub/formgrader.py) holds its course's nbgrader directory and
nothing else, so releasing, collecting, returning feedback and running a notebook in the
sandbox are requests to this service, authenticated by the hub. Only that course's grading
service (the hub-managed service `formgrader-<course>`) or one of the course's staff may ask,
and only about that course; which image and limits a notebook runs with is the hub's choice
(EXCHANGE_GRADING, from the settings and the course spec), never the caller's.

    GET  <prefix>api/staff/<course>/released                 [{assignment, notebooks}]
    POST <prefix>api/staff/<course>/release/<assignment>     tar.gz of release/<assignment>/
    GET  <prefix>api/staff/<course>/collect/<assignment>     tar.gz: <learner>/... (latest each)
    POST <prefix>api/staff/<course>/feedback/<assignment>    tar.gz: <learner>/timestamp.txt, *.html
    POST <prefix>api/staff/<course>/execute                  JSON notebook -> JSON execution
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from tornado import ioloop, web

from hub.exchange_service import Base
from hub.exchange_store import SCORE_FILE, ExchangeError, Score, check_name, pack, safe_extract
from onelab.errors import OneLabError

SERVICE_PREFIX = "formgrader-"
MAX_STAFF_UPLOAD = 256 * 1024 * 1024
MAX_EXECUTE = 48 * 1024 * 1024
KERNEL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class StaffBase(Base):
    def staff(self, course: str) -> str:
        """The caller, if it is this course's grading service or one of its staff."""
        user = self.get_current_user()
        if not user:
            raise web.HTTPError(403)
        name = user.get("name", "")
        if course in self.courses.by_id:
            if user.get("kind") == "service" and name == f"{SERVICE_PREFIX}{course}":
                return name
            if user.get("kind", "user") == "user" and self.courses.role(course, name) == "staff":
                return name
        raise web.HTTPError(404, f"no course {course!r} to manage for {name}")

    def in_pool(self, fn: Any, *args: Any) -> Any:
        return ioloop.IOLoop.current().run_in_executor(self.settings["pool"], fn, *args)


class ReleasedHandler(StaffBase):
    @web.authenticated
    def get(self, course: str) -> None:
        self.staff(course)
        out = [{"assignment": a, "notebooks": sorted(p.stem for p in (
                    self.store.outbound(course) / a).glob("*.ipynb"))}
               for a in self.store.released(course)]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(out))


class CollectHandler(StaffBase):
    @web.authenticated
    async def get(self, course: str, assignment: str) -> None:
        self.staff(course)
        check_name("assignment", assignment)
        latest = self.store.latest(course, assignment)
        data = await self.in_pool(pack, [(sub.path, f"./{learner}")
                                         for learner, sub in sorted(latest.items())])
        self.set_header("Content-Type", "application/gzip")
        self.finish(data)


@web.stream_request_body
class UploadHandler(StaffBase):
    """A body streamed to a file on the exchange's disk, then handled in the pool."""

    limit = MAX_STAFF_UPLOAD
    body: IO[bytes] | None = None
    body_path: Path | None = None

    @web.authenticated
    def prepare(self) -> None:
        if self.request.method != "POST":
            return
        self.staff(self.path_args[0])
        self.request.connection.set_max_body_size(self.limit)
        self.body_path = self.store.uploads_dir() / f"staff-{secrets.token_hex(8)}"
        self.body = open(self.body_path, "w+b")  # noqa: SIM115 - closed in on_finish

    def data_received(self, chunk: bytes) -> None:
        if self.body is not None:
            self.body.write(chunk)

    def on_finish(self) -> None:
        if self.body is not None:
            self.body.close()
        if self.body_path is not None:
            self.body_path.unlink(missing_ok=True)

    def unpacked(self) -> Path:
        """The body's tar.gz, unpacked into a fresh folder beside it (caller removes it)."""
        assert self.body is not None
        self.body.flush()
        self.body.seek(0)
        dest = self.store.uploads_dir() / f"staff-{secrets.token_hex(8)}.d"
        dest.mkdir()
        lim = self.store.limits
        try:
            safe_extract(self.body, dest, max_entries=max(lim.max_entries, 10_000),
                         max_unpacked=self.limit, room=self.limit, quota=self.limit)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return dest

    async def handle(self, fn: Any, *args: Any) -> Any:
        try:
            return await self.in_pool(fn, *args)
        except ExchangeError as e:
            raise web.HTTPError(e.status, str(e)) from None


class ReleaseHandler(UploadHandler):
    async def post(self, course: str, assignment: str) -> None:
        check_name("assignment", assignment)

        def release() -> None:
            folder = self.unpacked()
            try:
                if not any(folder.glob("*.ipynb")):
                    raise ExchangeError(f"the release of {assignment} holds no notebook")
                self.store.release(course, assignment, folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        await self.handle(release)
        self.set_status(201)
        self.finish({"released": assignment})


class FeedbackHandler(UploadHandler):
    async def post(self, course: str, assignment: str) -> None:
        check_name("assignment", assignment)
        learners = self.courses.learners.get(course, set())

        def put() -> list[str]:
            folder = self.unpacked()
            sent = []
            try:
                for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
                    ts = sub / "timestamp.txt"
                    htmls = sorted(sub.glob("*.html"))
                    if sub.name in learners and ts.is_file() and htmls:
                        self.store.put_feedback(course, sub.name, assignment,
                                                ts.read_text().strip(), htmls, _score(sub))
                        sent.append(sub.name)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return sent

        sent = await self.handle(put)
        self.set_status(201)
        self.finish({"feedback": sent})


def _score(folder: Path) -> Score | None:
    """The score the grading service sent with a learner's feedback (its gradebook's), if a
    sound one: a missing or malformed score.json returns the feedback without a score."""
    try:
        return Score.parse(json.loads((folder / SCORE_FILE).read_text()))
    except (OSError, ValueError):
        return None


class ExecuteHandler(UploadHandler):
    """Run one notebook in OneLab's sandbox with the course's image and the hub's limits."""

    limit = MAX_EXECUTE

    async def post(self, course: str) -> None:
        grading = (self.settings.get("grading") or {}).get(course)
        if not grading:
            raise web.HTTPError(503, f"no grading sandbox is set up for {course}")
        assert self.body is not None
        self.body.flush()
        self.body.seek(0)
        try:
            req = json.loads(self.body.read())
            nb, verify, kernel = req["notebook"], req.get("verify") or [], req["kernel"]
            if not (isinstance(nb, dict) and isinstance(nb.get("cells"), list) and
                    all(isinstance(i, int) for i in verify) and isinstance(kernel, str) and
                    KERNEL.match(kernel)):
                raise ValueError("bad shape")
            files = {str(k): base64.b64decode(v) for k, v in (req.get("files") or {}).items()}
        except (ValueError, KeyError, TypeError) as e:
            raise web.HTTPError(400, f"not a notebook to run ({e})") from None

        claims = self.settings.get("gpu_claims")

        def run() -> dict[str, Any]:
            return run_in_sandbox(grading, claims, nb, files, kernel, verify)

        try:
            result = await ioloop.IOLoop.current().run_in_executor(self.settings["grade_pool"],
                                                                   run)
        except OneLabError as e:  # no GPU free: the formgrader shows why, nothing is graded
            raise web.HTTPError(503, str(e)) from None
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result))


def run_in_sandbox(grading: dict[str, Any], claims: dict[str, Any] | None, nb: dict,
                   files: dict[str, bytes], kernel: str, verify: list[int]) -> dict[str, Any]:
    """One notebook in the course's sandbox. With GPU claims (grading asks for GPUs and the
    hub has an inventory) its GPUs are borrowed from the learners' claims for the run, never
    one a learner holds (hub/gpu/borrow.py); none free is a OneLabError that says so."""
    from graders import sandbox
    from hub.gpu.borrow import borrow
    from onelab.settings import GpuSettings, GradingLimits

    limits = GradingLimits(**grading["limits"])
    if not claims:
        return asdict(sandbox.execute(nb, files, grading["image"], limits, kernel=kernel,
                                      verify=verify))
    with borrow(claims["db_url"], GpuSettings(**claims["gpu"]), "autograde",
                limits.gpus) as gpus:
        return asdict(sandbox.execute(nb, files, grading["image"],
                                      limits.model_copy(update={"gpus": gpus}),
                                      kernel=kernel, verify=verify))


def staff_routes(p: str, seg: str) -> list[tuple[str, type]]:
    return [
        (rf"{p}/api/staff/{seg}/released", ReleasedHandler),
        (rf"{p}/api/staff/{seg}/release/{seg}", ReleaseHandler),
        (rf"{p}/api/staff/{seg}/collect/{seg}", CollectHandler),
        (rf"{p}/api/staff/{seg}/feedback/{seg}", FeedbackHandler),
        (rf"{p}/api/staff/{seg}/execute", ExecuteHandler),
    ]
