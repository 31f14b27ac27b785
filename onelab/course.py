"""A course as code: ``courses/<course_id>/course.yml`` beside its nbgrader ``source/`` notebooks.

One model, validated on load, used by everything that needs a course (regression, grading,
the hub's wiring). A mistake gives one line naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from onelab.errors import OneLabError
from onelab.settings import GpuPolicyName

SLUG = r"^[a-z0-9][a-z0-9._-]{0,63}$"
THRESHOLD = re.compile(r"^\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*$")


class CourseError(OneLabError):
    """A course spec that cannot be used, with where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Text(_Strict):
    """A title in Korean first, English second."""

    ko: str = Field(min_length=1)
    en: str = Field(min_length=1)


class LatePolicy(_Strict):
    per_day: float = Field(0.0, ge=0, le=1, description="Fraction of the score lost per day late.")
    max_days: int = Field(0, ge=0, description="After this many days late, the score is zero.")

    def factor(self, days_late: float) -> float:
        """Multiplier for a submission `days_late` days after the due date (0 when on time)."""
        import math

        if days_late <= 0:
            return 1.0
        days = math.ceil(days_late - 1e-9)
        if self.max_days and days > self.max_days:
            return 0.0
        return max(0.0, 1.0 - self.per_day * days)


class Regress(_Strict):
    parameters: dict[str, Any] = Field(default_factory=dict, description="papermill parameters of the small (CPU, CI) run")
    full: dict[str, Any] = Field(default_factory=dict, description="parameters merged over those for --full")
    timeout: int = Field(600, ge=10, le=24 * 3600, description="seconds one notebook may run")
    thresholds: dict[str, str] = Field(default_factory=dict, description='metric -> ">= x" or "<= x"')

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, str]) -> dict[str, str]:
        for metric, rule in v.items():
            if not THRESHOLD.match(str(rule)):
                raise ValueError(f"threshold of {metric!r} must look like '>= 0.9' or '<= 0.5', "
                                 f"not {rule!r}")
        return v

    def check(self, metrics: dict[str, float]) -> list[str]:
        """The thresholds not met, each as a sentence."""
        failed = []
        for metric, rule in self.thresholds.items():
            op, bound = THRESHOLD.match(rule).groups()  # type: ignore[union-attr]
            if metric not in metrics:
                failed.append(f"metric {metric!r} was not reported (the `metrics` cell shows "
                              f"{sorted(metrics) or 'none'})")
                continue
            value, limit = float(metrics[metric]), float(bound)
            ok = {">=": value >= limit, "<=": value <= limit, ">": value > limit,
                  "<": value < limit}[op]
            if not ok:
                failed.append(f"metric {metric} = {value:.4g} is not {op} {bound}")
        return failed


class CourseGpu(_Strict):
    """A course's own GPU rules, over the `gpu.*` settings (docs/gpu.md)."""

    policy: GpuPolicyName | None = Field(
        None, description="none, exclusive, shared or mig; default: gpu.default_policy")
    per_device: int | None = Field(
        None, ge=1, le=64, description="learners per GPU when shared; default: "
        "gpu.shared_per_device")
    weekly_hours: float | None = Field(
        None, ge=0, le=168, description="GPU-hours per learner per week in this course (0: "
        "unlimited); default: gpu.weekly_gpu_hours")


class Session(_Strict):
    """A class meeting: its learners' servers are warmed before it starts and kept until it
    ends (hub/warmup.py)."""

    start: datetime = Field(description="when it starts, with a time zone")
    minutes: int = Field(ge=1, le=24 * 60, description="how long it lasts")

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-12-08T09:00:00+09:00")
        return v

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)


class Assignment(_Strict):
    id: str = Field(pattern=SLUG)
    title: Text
    due: datetime | None = None
    late_policy: LatePolicy = Field(default_factory=LatePolicy)
    regress: Regress = Field(default_factory=Regress)

    @field_validator("due")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-12-07T23:59:00+09:00")
        return v


class Course(_Strict):
    id: str = Field(pattern=SLUG)
    title: Text
    instructors: list[str] = Field(min_length=1)
    assistants: list[str] = Field(default_factory=list)
    learners: list[str] = Field(default_factory=list)
    learners_csv: str | None = Field(None, description="CSV with a `username` column, beside course.yml")
    image: str = Field("learner", description="`learner` (the learner image) or an image tag")
    gpu: CourseGpu = Field(default_factory=CourseGpu, description="GPU policy, learners per "
                           "GPU and weekly GPU-hours of this course")
    sessions: list[Session] = Field(default_factory=list, description="class meetings: "
                                    "{start, minutes}; learners' servers are warmed before each")
    assignments: list[Assignment] = Field(min_length=1)
    root: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> Course:
        seen: set[str] = set()
        for a in self.assignments:
            if a.id in seen:
                raise ValueError(f"assignment id {a.id!r} appears twice")
            seen.add(a.id)
        return self

    def assignment(self, assignment_id: str) -> Assignment:
        for a in self.assignments:
            if a.id == assignment_id:
                return a
        raise CourseError(f"course {self.id} has no assignment {assignment_id!r} "
                          f"(it has {', '.join(a.id for a in self.assignments)})")

    def source_dir(self, assignment_id: str) -> Path:
        return self.root / "source" / assignment_id

    def notebooks(self, assignment_id: str) -> list[Path]:
        return sorted(self.source_dir(assignment_id).glob("*.ipynb"))

    def staff(self) -> set[str]:
        """Who teaches the course: its instructors and assistants (the course's staff group, its
        formgrader and its dashboard admit exactly them)."""
        return set(self.instructors) | set(self.assistants)

    def all_learners(self) -> list[str]:
        names = list(self.learners)
        if self.learners_csv:
            path = self.root / self.learners_csv
            try:
                with path.open(newline="", encoding="utf-8-sig") as fh:
                    names += [row["username"].strip() for row in csv.DictReader(fh)
                              if row.get("username", "").strip()]
            except (OSError, KeyError) as e:
                raise CourseError(f"{path}: cannot read learners ({e}); it needs a `username` "
                                  "column") from None
        return sorted(set(names))


def _lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Line number (1-based) of every key and item in a composed YAML document."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            out.update(_lines(value, sub))
            out[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_lines(item, path + (i,)))
    return out


def _duplicate_key(node: yaml.Node) -> tuple[str, int] | None:
    """The first key a mapping names twice (YAML loaders silently keep the last), with its
    line: `assistants:` written twice would drop someone's staff rights without a word."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if k.value in seen:
                return str(k.value), k.start_mark.line + 1
            seen.add(k.value)
            found = _duplicate_key(v)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found:
                return found
    return None


def load_course(path: Path) -> Course:
    """Read and check a course.yml (or the folder holding one)."""
    path = path / "course.yml" if path.is_dir() else path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CourseError(f"{path}: cannot read the course spec ({e.strerror})") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise CourseError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise CourseError(f"{path}: must be a mapping with id, title, instructors, assignments")
    twice = _duplicate_key(node) if node is not None else None
    if twice is not None:
        key, line = twice
        raise CourseError(f"{path} line {line}: {key!r} is given twice (YAML keeps only one of "
                          "them; say it once)")
    lines = _lines(node) if node is not None else {}
    try:
        course = Course.model_validate({**data, "root": path.parent})
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(top)"
        at = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        where = f" line {at}" if at else ""
        raise CourseError(f"{path}{where}: {field}: {msg}") from None
    if course.id != path.parent.name:
        raise CourseError(f"{path} line {lines.get(('id',), 1)}: id: {course.id!r} must equal "
                          f"its folder name {path.parent.name!r}")
    for a in course.assignments:
        if not course.notebooks(a.id):
            i = course.assignments.index(a)
            raise CourseError(f"{path} line {lines.get(('assignments', i), 1)}: "
                              f"assignments.{i}.id: no notebooks in "
                              f"{course.source_dir(a.id).relative_to(path.parent)}/")
    return course


def courses_dir() -> Path:
    """The repository's courses/ folder."""
    return Path(__file__).resolve().parents[1] / "courses"


def load_courses(root: Path | None = None, ids: list[str] | None = None) -> list[Course]:
    """Every course under `root` (default: the repository's courses/), or the named ones."""
    root = root or courses_dir()
    found = {p.parent.name: p for p in sorted(root.glob("*/course.yml"))}
    if ids:
        missing = [i for i in ids if i not in found]
        if missing:
            raise CourseError(f"no course {', '.join(missing)} in {root} (there are: "
                              f"{', '.join(found) or 'none'})")
        return [load_course(found[i]) for i in ids]
    return [load_course(p) for p in found.values()]
