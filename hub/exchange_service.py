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
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from jupyterhub.services.auth import HubAuthenticated
from tornado import ioloop, web

from hub.exchange_store import ExchangeError, ExchangeStore, _safe_ts, pack
from onelab.course import Course, load_courses

log = logging.getLogger("onelab.exchange")


class Courses:
    """Course membership from the specs: learners, and staff (instructors and assistants)."""

    def __init__(self, courses: list[Course]) -> None:
        self.by_id = {c.id: c for c in courses}
        self.learners = {c.id: set(c.all_learners()) for c in courses}
        self.staff = {c.id: set(c.instructors) | set(c.assistants) for c in courses}

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
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": msg}))


class CoursesHandler(Base):
    @web.authenticated
    def get(self) -> None:
        name = self.get_current_user()["name"]
        self.finish({"user": name, "courses": [
            {"id": c.id, "title": c.title.model_dump(), "role": role}
            for c, role in self.courses.of(name)]})


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


class SubmitHandler(Base):
    @web.authenticated
    def post(self, course: str, assignment: str) -> None:
        name, role = self.member(course)
        if role != "learner":
            raise web.HTTPError(403, "only the course's learners submit")
        try:
            sub = self.store.submit(course, name, assignment, self.request.body)
        except ExchangeError as e:
            raise web.HTTPError(e.status, str(e)) from None
        log.info("submission %s/%s from %s at %s", course, assignment, name, sub.timestamp)
        self.set_status(201)
        self.finish({"course": course, "assignment": assignment, "learner": name,
                     "timestamp": sub.timestamp, "receipt": sub.path.name})


def make_app(store: ExchangeStore, courses: Courses, prefix: str) -> web.Application:
    p = prefix.rstrip("/")
    seg = r"([A-Za-z0-9][A-Za-z0-9._@-]*)"
    return web.Application([
        (rf"{p}/api/courses", CoursesHandler),
        (rf"{p}/api/pull/{seg}", PullHandler),
        (rf"{p}/api/submit/{seg}/{seg}", SubmitHandler),
    ], store=store, courses=courses, max_body_size=110 * 1024 * 1024)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[exchange %(levelname)s] %(message)s")
    from urllib.parse import urlparse

    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/onelab-exchange/")
    store = ExchangeStore(Path(os.environ["EXCHANGE_ROOT"]))
    courses = Courses(load_courses(Path(os.environ["EXCHANGE_COURSES"])))
    app = make_app(store, courses, prefix)
    app.listen(url.port, address=url.hostname)
    log.info("exchange for %d course(s) on %s", len(courses.by_id), url.geturl())
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
