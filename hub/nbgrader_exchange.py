"""nbgrader's exchange, instructor side, on the hub host: release, collect and release feedback
straight into OneLab's exchange storage (hub/exchange_store.py).

Configured in each course's nbgrader directory (hub/coursework.py writes the config), so the
formgrader's Release / Collect / Release feedback buttons and `onelab assignment ...` take the
one same path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbgrader.exchange.abc import (Exchange, ExchangeCollect, ExchangeList,
                                   ExchangeReleaseAssignment, ExchangeReleaseFeedback)
from traitlets import Unicode

from hub.exchange_store import ExchangeStore, replace_dir


class HubExchange(Exchange):
    root = Unicode("", help="OneLab's exchange storage (<state_dir>/exchange).").tag(config=True)

    @property
    def store(self) -> ExchangeStore:
        if not self.root or not Path(self.root).is_dir():
            self.fail(f"OneLab's exchange storage {self.root!r} does not exist: run "
                      "`onelab course sync` on the hub")
        return ExchangeStore(Path(self.root))

    @property
    def course(self) -> str:
        if not self.coursedir.course_id:
            self.fail("no course id in this nbgrader directory's config")
        return self.coursedir.course_id

    def _path(self, kind: str, student: str, assignment: str) -> Path:
        return Path(self.coursedir.format_path(kind, student, assignment))


class InstructorList(HubExchange, ExchangeList):
    """What is released (the formgrader shows it); nothing of learners' inbound."""

    def start(self) -> list[dict[str, Any]]:
        store = self.store
        wanted = self.coursedir.assignment_id
        out = []
        for a in store.released(self.course):
            if wanted and a != wanted:
                continue
            path = store.outbound(self.course) / a
            out.append({"course_id": self.course, "assignment_id": a, "status": "released",
                        "path": str(path),
                        "notebooks": [{"notebook_id": nb.stem, "path": str(nb)}
                                      for nb in sorted(path.glob("*.ipynb"))]})
        return out


class ReleaseAssignment(HubExchange, ExchangeReleaseAssignment):
    def start(self) -> None:
        aid = self.coursedir.assignment_id
        src = self._path(self.coursedir.release_directory, ".", aid)
        if not src.is_dir():
            self.fail(f"{src} does not exist: generate the assignment first")
        self.store.release(self.course, aid, src)
        self.log.info("Released %s of %s to learners", aid, self.course)


class Collect(HubExchange, ExchangeCollect):
    def start(self) -> None:
        aid = self.coursedir.assignment_id
        for learner, sub in sorted(self.store.latest(self.course, aid).items()):
            dest = self._path(self.coursedir.submitted_directory, learner, aid)
            ts_file = dest / "timestamp.txt"
            if dest.exists() and ts_file.exists() and ts_file.read_text().strip() == sub.timestamp:
                continue  # already this submission
            replace_dir(sub.path, dest)  # whole: never a half-copied submission to grade
            self.log.info("Collected %s of %s from %s (%s)", aid, self.course, learner,
                          sub.timestamp)


class ReleaseFeedback(HubExchange, ExchangeReleaseFeedback):
    def start(self) -> None:
        aid = self.coursedir.assignment_id
        student = self.coursedir.student_id or "*"
        store = self.store
        for folder in sorted(Path(self.coursedir.format_path(
                self.coursedir.feedback_directory, student, aid)).parent.parent.glob(
                f"{student}/{aid}")):
            htmls = sorted(folder.glob("*.html"))
            ts = folder / "timestamp.txt"
            if htmls and ts.exists():
                store.put_feedback(self.course, folder.parent.name, aid, ts.read_text().strip(),
                                   htmls)
                self.log.info("Feedback of %s released to %s", aid, folder.parent.name)
