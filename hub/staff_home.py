"""The course dashboard: a course's staff see, per assignment, how many learners submitted, who
was late, how far grading has come, the score distribution, and act on it (release, collect,
grade, return feedback) from the browser.

The pages are the hub's own (``/hub/onelab/courses/<course>``), so they share its login, its
templates and catalogue (Korean first) and its XSRF protection. Only the course's instructors
and assistants (``Course.staff``) and hub admins get in; anyone else gets 403, learners
included. The buttons call hub/coursework.py, the very functions behind
``onelab assignment release|collect|grade|feedback``: nbgrader runs inside the course's
confined grading service, never on the host. An action runs in a worker thread as a *job* the
page polls; a course runs one action at a time (two grades of one course at once would race
for its gradebook), and a second one is refused with who is running what.

JupyterHub calls ``extra_handlers`` deprecated in favour of services; a service would need its
own OAuth round trip, page layout and language decision, so the dashboard stays in the hub
while JupyterHub (pinned in docker/host.lock) keeps the trait. Jobs live in the hub's memory:
a hub restart forgets a job's report, never its effect (nbgrader wrote it to the course).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web
from traitlets.config import Config

from hub import coursework
from hub.classroom import histogram, staff_view
from onelab import audit, i18n
from onelab.course import Course
from onelab.errors import OneLabError
from onelab.settings import Settings

log = logging.getLogger("onelab.staff_home")
ACTIONS = ("release", "collect", "grade", "feedback")
LABELS = {"release": i18n.N_("Release"), "collect": i18n.N_("Collect"),
          "grade": i18n.N_("Grade"), "feedback": i18n.N_("Return feedback")}
"""Each action's name on its button and in what the page says of it."""
KEEP_JOBS = 200


@dataclass
class Job:
    id: str
    course: str
    assignment: str
    action: str
    user: str
    lang: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    ok: bool | None = None
    message: str = ""

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "course": self.course, "assignment": self.assignment,
                "action": self.action, "user": self.user, "started": self.started,
                "finished": self.finished, "ok": self.ok, "message": self.message,
                "state": "running" if self.finished is None else ("done" if self.ok
                                                                  else "failed")}


def summary(action: str, value: Any, lang: str, assignment: str) -> tuple[bool, str]:
    """What an action did, in the staff member's language, from what hub/coursework returned."""
    _ = i18n.gettext(lang)
    if action == "release":
        return True, _("{assignment} is released: learners can fetch it now.").format(
            assignment=assignment)
    if action == "collect":
        return True, _("Collected {n} submission(s): {names}").format(
            n=len(value), names=", ".join(value) or _("none yet"))
    if action == "grade":
        graded = [r["student"] for r in value if r["status"] == "graded"]
        failed = [r for r in value if r["status"] == "failed"]
        skipped = [r for r in value if r["status"] == "skipped"]
        text = _("{graded} graded, {failed} failed, {skipped} skipped").format(
            graded=len(graded), failed=len(failed), skipped=len(skipped))
        for r in failed:
            text += f"\n{r['student']}: {str(r.get('error', ''))[:200]}"
        return not failed, text
    return True, _("Feedback returned to {n} learner(s): {names}").format(
        n=len(value), names=", ".join(value) or _("none"))


class Jobs:
    """Staff actions running in worker threads, one per course at a time."""

    def __init__(self, settings: Settings, workers: int = 2) -> None:
        self.settings = settings
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onelab-action")
        self.jobs: dict[str, Job] = {}
        self.running: dict[str, Job] = {}  # course -> its running job
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    def __deepcopy__(self, memo: dict[int, Any]) -> Jobs:
        """One queue per hub: traitlets copies config values, and a copy would be a second
        queue with a second idea of what runs (a thread pool cannot be copied anyway)."""
        return self

    def calls(self) -> dict[str, Callable[..., Any]]:
        return {"release": coursework.release, "collect": coursework.collect,
                "grade": coursework.grade, "feedback": coursework.feedback}

    def start(self, course: str, assignment: str, action: str, user: str, lang: str) -> Job:
        """Start ``action``; raises 409 while another action of the course runs."""
        with self.lock:
            busy = self.running.get(course)
            if busy is not None:
                _ = i18n.gettext(lang)
                raise web.HTTPError(409, _(
                    "{user} is running {action} of {assignment} in this course; try again "
                    "when it is done.").format(user=busy.user, action=_(LABELS[busy.action]),
                                               assignment=busy.assignment))
            job = Job(f"{next(self.ids)}-{int(time.time())}", course, assignment, action,
                      user, lang)
            self.jobs[job.id] = job
            self.running[course] = job
            for old in list(self.jobs)[:-KEEP_JOBS]:
                if self.jobs[old].finished is not None:
                    del self.jobs[old]
        log.info("%s started %s of %s/%s (job %s)", user, action, course, assignment, job.id)
        self.pool.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        _ = i18n.gettext(job.lang)
        try:
            value = self.calls()[job.action](self.settings, job.course, job.assignment)
            job.ok, job.message = summary(job.action, value, job.lang, job.assignment)
        except OneLabError as e:
            job.ok, job.message = False, _("{action} failed: {error}").format(
                action=_(LABELS[job.action]), error=e)
        except Exception as e:  # the page must hear of it, not wait forever
            log.exception("job %s failed", job.id)
            job.ok, job.message = False, _("{action} failed: {error}").format(
                action=_(LABELS[job.action]), error=f"{type(e).__name__}: {e}")
        finally:
            log.info("%s's %s of %s/%s ended: %s", job.user, job.action, job.course,
                     job.assignment, "ok" if job.ok else job.message)
            try:  # in the log before anyone sees the job end, so the log's order is the jobs'
                audit.record(self.settings.state_dir, job.user, f"assignment.{job.action}",
                             f"{job.course}/{job.assignment}", "ok" if job.ok else "failed",
                             via="dashboard", job=job.id,
                             **({} if job.ok else {"error": job.message[:500]}))
            except OSError:
                log.exception("Could not write the audit log for job %s", job.id)
            job.finished = time.time()
            with self.lock:
                self.running.pop(job.course, None)

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def running_in(self, course: str) -> Job | None:
        return self.running.get(course)


def gradebook(settings: Settings, course: Course) -> dict[str, Any]:
    """What the course's gradebook holds ({assignment: {learner: score}}), read inside its
    grading service; an unready service is said, not waited for (a page must not hang)."""
    from hub.formgrader import READY, container_name, op
    from onelab import dockerdoor

    name = container_name(settings, course.id)
    ctr = dockerdoor.find_container(name)
    if ctr is None or ctr.status != "running" or dockerdoor.exec_in(
            name, ["test", "-f", READY])[0] != 0:
        return {"ready": False, "scores": {}, "max": {}}
    rows = op(name, "scores", *[a.id for a in course.assignments])
    scores: dict[str, dict[str, float]] = {}
    top: dict[str, float] = {}
    learners = set(course.all_learners())
    for r in rows:
        if r["learner"] in learners:
            scores.setdefault(r["assignment"], {})[r["learner"]] = r["score"]
            top[r["assignment"]] = max(top.get(r["assignment"], 0.0), r["max_score"])
    return {"ready": True, "scores": scores, "max": top}


def dashboard(settings: Settings, course: Course) -> dict[str, Any]:
    """The exchange's counts per assignment, with the gradebook's progress and the chart of
    the gradebook's scores (the returned scores while the gradebook cannot be read)."""
    from hub.courses import exchange_root
    from hub.exchange_store import ExchangeStore

    view = staff_view(ExchangeStore(exchange_root(settings)), course)
    try:
        book = gradebook(settings, course)
        view["gradebook_error"] = None
    except OneLabError as e:
        book = {"ready": False, "scores": {}, "max": {}}
        view["gradebook_error"] = str(e)
    view["gradebook_ready"] = book["ready"]
    for a in view["assignments"]:
        graded = book["scores"].get(a["id"], {})
        a["graded"] = len(graded)
        if graded:
            a["chart"] = histogram(sorted(graded.values()), book["max"].get(a["id"]))
            a["chart_of"] = "graded"
        else:
            a["chart"] = histogram(a["scores"], a["max_score"])
            a["chart_of"] = "returned"
    return view


class StaffPage(BaseHandler):
    """Common ground: the course from the URL, admitted for its staff (and hub admins) only."""

    def initialize(self, settings: Settings, jobs: Jobs) -> None:  # type: ignore[override]
        self.onelab = settings
        self.jobs = jobs

    def course_for_staff(self, course_id: str) -> Course:
        user = self.current_user
        if user is None:
            raise web.HTTPError(403)
        try:
            course = coursework.find_course(self.onelab, course_id)
        except OneLabError:
            raise web.HTTPError(404) from None
        if user.name not in course.staff() and not user.admin:
            # the same answer whether or not the course exists would hide nothing here: the
            # course list is in the learners' own home page
            raise web.HTTPError(403)
        return course

    def language(self) -> str:
        """The page's language, as the language switch decided it (hub/preferences.py)."""
        decide = self.settings.get("template_vars", {}).get(i18n.TEMPLATE_VAR)
        return (decide(self.current_user) if callable(decide) else None) or i18n.DEFAULT


class CourseDashboard(StaffPage):
    @web.authenticated
    async def get(self, course_id: str) -> None:
        course = self.course_for_staff(course_id)
        view = await asyncio.get_running_loop().run_in_executor(
            None, dashboard, self.onelab, course)
        running = self.jobs.running_in(course.id)
        html = await self.render_template(
            "onelab_course.html", course=view, running=running.public() if running else None,
            formgrader_url=f"{self.base_url}services/formgrader-{course.id}/",
            actions=ACTIONS)
        self.finish(html)


class CourseAction(StaffPage):
    async def post(self, course_id: str, assignment: str, action: str) -> None:
        course = self.course_for_staff(course_id)
        if action not in ACTIONS:
            raise web.HTTPError(404)
        try:
            course.assignment(assignment)
        except OneLabError:
            raise web.HTTPError(404) from None
        job = self.jobs.start(course.id, assignment, action, self.current_user.name,
                              self.language())
        self.set_status(202)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(job.public()))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JSON for the page's script: the reason, in words."""
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            reason = exc.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": reason}))


class JobStatus(StaffPage):
    async def get(self, course_id: str, job_id: str) -> None:
        course = self.course_for_staff(course_id)
        job = self.jobs.get(job_id)
        if job is None or job.course != course.id:
            raise web.HTTPError(404)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(job.public()))

    write_error = CourseAction.write_error


def configure_staff_home(c: Config, settings: Settings) -> None:
    """The dashboard's pages, under the hub's prefix (see the module docstring)."""
    jobs = Jobs(settings)
    seg = r"([A-Za-z0-9][A-Za-z0-9_.-]*)"
    kw = {"settings": settings, "jobs": jobs}
    c.JupyterHub.extra_handlers = [
        *(c.JupyterHub.get("extra_handlers") or []),
        (rf"/onelab/courses/{seg}/?", CourseDashboard, kw),
        (rf"/onelab/courses/{seg}/assignments/{seg}/({'|'.join(ACTIONS)})", CourseAction, kw),
        (rf"/onelab/courses/{seg}/jobs/([0-9]+-[0-9]+)", JobStatus, kw),
    ]
