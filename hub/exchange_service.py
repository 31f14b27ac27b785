"""The nbgrader exchange as a hub-authenticated service (`python -m hub.exchange_service`).

Learners' containers never share a directory: nbgrader in each container keeps a private
exchange folder and the OneLab plugin (images/learner/onelab_exchange.py) syncs it with this
service, authenticated by the server's own hub token. Who is asking is the hub's answer, never
the request's; what they may see follows the course specs: a learner gets the released
assignments of their own courses and their own feedback, can add submissions of their own,
and can read nobody's submission, not even their own (the container keeps its copy).

    GET  <prefix>api/courses                      the caller's courses
    GET  <prefix>api/pull/<course>                tar.gz: outbound/<a>/..., feedback/<hash>.html
    POST <prefix>api/submit/<course>/<assignment> tar.gz of one submission -> 201 + receipt

A submission is streamed to a file on the exchange's disk (never held in memory) and unpacked
in a small thread pool (`exchange.workers`), so the event loop goes on serving everyone else
while one upload is unpacked. The `exchange.*` limits refuse what does not fit from the
request's headers when they can (413 too large, 429 too many submissions, 507 over quota),
before any of the body is read (a client sending `Expect: 100-continue` sends none of it),
and otherwise the moment the archive passes a cap; a refusal stores nothing and answers
`{"error": "<Korean> / <English>"}`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from jupyterhub.services.auth import HubAuth, HubAuthenticated
from tornado import ioloop, web

from hub.exchange_store import ExchangeError, ExchangeStore, Limits, _safe_ts, disk_full, pack
from onelab.course import Course, load_courses
from onelab.settings import ExchangeSettings

log = logging.getLogger("onelab.exchange")


class Courses:
    """Course membership from the specs: learners, and staff (instructors and assistants)."""

    def __init__(self, courses: list[Course]) -> None:
        self.by_id = {c.id: c for c in courses}
        self.learners = {c.id: set(c.all_learners()) for c in courses}
        self.staff = {c.id: c.staff() for c in courses}

    def role(self, course: str, user: str) -> str | None:
        if user in self.staff.get(course, ()):
            return "staff"
        if user in self.learners.get(course, ()):
            return "learner"
        return None

    def of(self, user: str) -> list[tuple[Course, str]]:
        return [(c, r) for c in self.by_id.values() if (r := self.role(c.id, user))]


class Base(HubAuthenticated, web.RequestHandler):
    @property
    def store(self) -> ExchangeStore:
        return self.settings["store"]

    @property
    def courses(self) -> Courses:
        return self.settings["courses"]

    def member(self, course: str) -> tuple[str, str]:
        user = self.get_current_user()
        if not user:
            raise web.HTTPError(403)
        name = user["name"]
        role = self.courses.role(course, name)
        if role is None:
            # the same answer whether the course exists or not: no probing for courses
            raise web.HTTPError(404, f"no course {course!r} for {name}")
        return name, role

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        msg = str(exc) if isinstance(exc, ExchangeError) else (
            getattr(exc, "log_message", None) or self._reason)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": msg}, ensure_ascii=False))


class CoursesHandler(Base):
    @web.authenticated
    def get(self) -> None:
        name = self.get_current_user()["name"]
        self.finish({"user": name, "courses": [
            {"id": c.id, "title": c.title.model_dump(), "role": role}
            for c, role in self.courses.of(name)]})


class CourseworkHandler(Base):
    """The caller's released assignments in each course they learn in: due dates, their
    submissions, and feedback with its score once returned (hub/classroom.py)."""

    @web.authenticated
    def get(self) -> None:
        from hub.classroom import learner_view

        name = self.get_current_user()["name"]
        self.finish({"user": name, "courses": [
            learner_view(self.store, c, name) for c, role in self.courses.of(name)
            if role == "learner"]})


class PullHandler(Base):
    @web.authenticated
    def get(self, course: str) -> None:
        name, _ = self.member(course)
        released = [(self.store.outbound(course) / a, f"./outbound/{a}")
                    for a in self.store.released(course)]
        feedback = [(path, f"./feedback/{hashed}")
                    for hashed, path in feedback_files(self.store, course, name)]
        self.set_header("Content-Type", "application/gzip")
        self.finish(pack(released + feedback))


def feedback_files(store: ExchangeStore, course: str, learner: str) -> list[tuple[str, Path]]:
    """This learner's feedback, named as nbgrader's fetch_feedback looks for it: the hash of
    the notebook id with the secret their own submission carried."""
    from nbgrader.utils import notebook_hash

    secrets_by_ts = {}
    for sub in store.submissions(course, learner=learner):
        try:
            secrets_by_ts[(sub.assignment, _safe_ts(sub.timestamp))] = (
                sub.path / "submission_secret.txt").read_text()
        except OSError:
            continue
    out = []
    for assignment, ts, html in store.feedback_for(course, learner):
        secret = secrets_by_ts.get((assignment, ts))
        if secret is not None:
            out.append((f"{notebook_hash(secret=secret, notebook_id=html.stem)}.html", html))
    return out


@web.stream_request_body
class SubmitHandler(Base):
    """One submission: checked from its headers, streamed to disk, unpacked in the pool."""

    learner: str | None = None
    body: IO[bytes] | None = None
    body_path: Path | None = None
    unpacking = False
    write_failed = False

    @property
    def uploading(self) -> set[str]:
        """Learners with an upload in progress: one each, so nobody fills the disk with many
        bodies at once."""
        return self.settings["uploading"]

    @web.authenticated
    async def prepare(self) -> None:
        if self.request.method != "POST":
            return  # answered 405, with no body read
        course, assignment = self.path_args
        name, role = self.member(course)
        if role != "learner":
            raise web.HTTPError(403, "only the course's learners submit")
        length = self.request.headers.get("Content-Length", "")
        if not length.isdigit() or "Transfer-Encoding" in self.request.headers:
            raise web.HTTPError(411, "제출물은 크기(Content-Length)와 함께 보내야 합니다 / "
                                     "a submission needs a Content-Length")
        if name in self.uploading:
            raise web.HTTPError(429, "앞서 보낸 제출물을 아직 받는 중입니다. 끝난 뒤 다시 "
                                     "제출하세요 / an earlier upload of yours is still in "
                                     "progress; submit again when it is done")
        self.uploading.add(name)
        self.learner = name
        try:  # refused here, before the body is read (and, with 100-continue, sent)
            await ioloop.IOLoop.current().run_in_executor(
                None, self.store.check_room, course, name, assignment, int(length))
        except ExchangeError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.request.connection.set_max_body_size(self.store.limits.max_upload)
        self.body_path = self.store.uploads_dir() / f"{name}-{secrets.token_hex(8)}"
        # a quick local open; every write after it goes straight to this file
        self.body = open(self.body_path, "w+b")  # noqa: ASYNC230, SIM115 (closed in _done)

    def data_received(self, chunk: bytes) -> None:
        if self.body is not None and not self.write_failed:
            try:
                self.body.write(chunk)
            except OSError:  # the disk filled up: answered once the body has arrived
                self.write_failed = True

    async def post(self, course: str, assignment: str) -> None:
        assert self.body is not None and self.learner is not None
        name = self.learner
        self.unpacking = True
        try:
            if self.write_failed:
                raise disk_full()
            self.body.flush()
            sub = await ioloop.IOLoop.current().run_in_executor(
                self.settings["pool"], self.store.submit, course, name, assignment, self.body)
        except OSError as e:  # flushing the body's last bytes
            if e.errno != 28:
                raise
            raise web.HTTPError(507, str(disk_full())) from None
        except ExchangeError as e:
            log.info("refused %s/%s from %s: %s", course, assignment, name, e)
            raise web.HTTPError(e.status, str(e)) from None
        finally:
            self._done()
        log.info("submission %s/%s from %s at %s", course, assignment, name, sub.timestamp)
        self.set_status(201)
        self.finish({"course": course, "assignment": assignment, "learner": name,
                     "timestamp": sub.timestamp, "receipt": sub.path.name})

    def _done(self) -> None:
        """Remove the body file and let the learner upload again (idempotent)."""
        if self.body is not None:
            self.body.close()
            self.body = None
        if self.body_path is not None:
            self.body_path.unlink(missing_ok=True)
            self.body_path = None
        if self.learner is not None:
            self.uploading.discard(self.learner)
            self.learner = None

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if not self.unpacking:  # an unpack under way finishes (and cleans up) on its own
            self._done()

    def on_finish(self) -> None:
        if not self.unpacking:
            self._done()


def make_app(store: ExchangeStore, courses: Courses, prefix: str,
             workers: int = 4, grading: dict[str, dict] | None = None,
             gpu_claims: dict[str, Any] | None = None) -> web.Application:
    from hub.exchange_staff import staff_routes  # staff's side (it builds on Base, above)

    p = prefix.rstrip("/")
    seg = r"([A-Za-z0-9][A-Za-z0-9._@-]*)"
    return web.Application([
        (rf"{p}/api/courses", CoursesHandler),
        (rf"{p}/api/coursework", CourseworkHandler),
        (rf"{p}/api/pull/{seg}", PullHandler),
        (rf"{p}/api/submit/{seg}/{seg}", SubmitHandler),
        *staff_routes(p, seg),
    ], store=store, courses=courses, uploading=set(),
        pool=ThreadPoolExecutor(workers, thread_name_prefix="unpack"),
        grading=grading or {}, gpu_claims=gpu_claims,
        grade_pool=ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="grade"))


def exchange_settings(environ: dict[str, str] | os._Environ[str]) -> ExchangeSettings:
    """The limits the hub passed in the service's environment (ONELAB_EXCHANGE__*)."""
    prefix = "ONELAB_EXCHANGE__"
    values: dict[str, Any] = {k[len(prefix):].lower(): v for k, v in environ.items()
                              if k.startswith(prefix)}
    return ExchangeSettings.model_validate(values)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[exchange %(levelname)s] %(message)s")
    from urllib.parse import urlparse

    from hub.lifeline import bind_patiently, die_with_parent

    die_with_parent()  # a killed hub takes its exchange along (hub/lifeline.py)

    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/onelab-exchange/")
    # Who a token belongs to is asked of the hub again after 5 s (JupyterHub's default keeps
    # the answer 5 min): a removed account's token stops working here at once, not later.
    HubAuth.instance(cache_max_age=5)
    limits = exchange_settings(os.environ)
    store = ExchangeStore(Path(os.environ["EXCHANGE_ROOT"]), Limits.from_settings(limits))
    store.clear_partial()  # bodies and half-unpacked folders of a crash: nothing uploads yet
    courses = Courses(load_courses(Path(os.environ["EXCHANGE_COURSES"])))
    app = make_app(store, courses, prefix, limits.workers,
                   json.loads(os.environ.get("EXCHANGE_GRADING") or "{}"),
                   json.loads(os.environ.get("EXCHANGE_GPU_CLAIMS") or "null"))
    # Requests other than a submission carry no body; a submission raises its own cap to
    # exchange.max_upload in prepare(). A body that stops arriving is dropped after an hour.
    bind_patiently(lambda: app.listen(url.port, address=url.hostname, max_body_size=64 * 1024,
                                      body_timeout=3600))
    log.info("exchange for %d course(s) on %s; limits %s", len(courses.by_id), url.geturl(),
             limits.model_dump())
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
