"""Course specs: a mistake names the file, the line and the field; the rules compute right."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from onelab.course import CourseError, LatePolicy, Regress, load_course, load_courses
from regress.qa import metadata_problems
from tests.courses import minicourse


def _spec(tmp_path: Path, text: str) -> Path:
    minicourse.write(tmp_path)
    f = tmp_path / minicourse.COURSE / "course.yml"
    f.write_text(text, encoding="utf-8")
    return f


def test_the_mini_course_loads(tmp_path):
    course = load_course(minicourse.write(tmp_path) / minicourse.COURSE)
    a = course.assignment("01-line")
    assert a.due == datetime.fromisoformat("2026-12-01T23:59:00+09:00")
    assert a.regress.parameters == {"N_SAMPLES": 300} and a.regress.timeout == 120
    assert [p.name for p in course.notebooks("01-line")] == ["line.ipynb"]


@pytest.mark.parametrize("change, expected", [
    (("instructors: [instructor]", "instructors: []"), r"line 3: instructors: .*at least 1"),
    (("    due:", "    deu:"), r"line 7: assignments.0.deu: unknown field"),
    (('"2026-12-01T23:59:00+09:00"', '"2026-12-01T23:59:00"'),
     r"line 7: assignments.0.due: needs a time zone"),
    (('thresholds: {mse: "<= 0.02"', 'thresholds: {mse: "about 0.02"'),
     r"line 12: assignments.0.regress.thresholds: threshold of 'mse' must look like"),
    (("id: mini", "id: other"), r"line 1: id: 'other' must equal its folder name 'mini'"),
    (("  - id: 01-line", "  - id: 02-missing"), r"line 5: assignments.0.id: no notebooks in "
                                               r"source/02-missing"),
    (("title: {ko: 미니 과정, en: Mini course}", "title: {ko: 미니 과정}"),
     r"line 2: title.en: required field is missing"),
    (("id: mini", "id: [mini"), r"course.yml line \d+: not valid YAML"),
    (("instructors: [instructor]", "instructors: [instructor]\ninstructors: [tina]"),
     r"line 4: 'instructors' is given twice"),
])
def test_bad_specs_name_the_line_and_field(tmp_path, change, expected):
    text = minicourse.SPEC.replace("THRESHOLD", "0.02")
    assert change[0] in text
    f = _spec(tmp_path, text.replace(*change))
    with pytest.raises(CourseError, match=expected) as info:
        load_course(f)
    assert "\n" not in str(info.value)


def test_unknown_course_id_is_named(tmp_path):
    with pytest.raises(CourseError, match=r"no course nope in .*there are: mini"):
        load_courses(minicourse.write(tmp_path), ["nope"])


def test_thresholds_and_late_policy():
    r = Regress(thresholds={"accuracy": ">= 0.9", "loss": "< 0.5"})
    assert r.check({"accuracy": 0.95, "loss": 0.1}) == []
    assert r.check({"accuracy": 0.5, "loss": 0.1}) == ["metric accuracy = 0.5 is not >= 0.9"]
    assert "was not reported" in r.check({"accuracy": 0.95})[0]
    late = LatePolicy(per_day=0.1, max_days=3)
    assert [late.factor(d) for d in (0, 0.2, 1, 1.5, 3, 3.1)] == [1.0, 0.9, 0.9, 0.8, 0.7, 0.0]


def test_metadata_mistakes_are_reported_with_their_cell():
    nb = minicourse.notebook()
    nb.cells[5].metadata["nbgrader"]["grade_id"] = "test_slope"  # duplicate of cell 5's
    del nb.cells[4].metadata["nbgrader"]["points"]
    problems = metadata_problems("mini/01-line/line.ipynb", nbformat.from_dict(nb))
    assert "mini/01-line/line.ipynb cell 6 (grade_id 'test_slope'): duplicate grade_id " \
           "(also cell 5)" in problems
    assert "mini/01-line/line.ipynb cell 5 (grade_id 'test_slope'): graded cell without " \
           "positive points (points: None)" in problems


def test_grading_uses_the_image_a_course_spec_names(tmp_path, monkeypatch):
    import onelab.course
    from onelab.settings import load
    from onelab_cli.main import _spec_image

    courses = minicourse.write(tmp_path / "courses")
    spec = courses / minicourse.COURSE / "course.yml"
    nbg = tmp_path / "nbgrader-course"
    nbg.mkdir()
    (nbg / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = {minicourse.COURSE!r}\n")
    monkeypatch.setattr(onelab.course, "courses_dir", lambda: courses)
    settings = load(path=None, environ={})
    assert _spec_image(nbg, settings) is None  # `image: learner` (the default)
    spec.write_text(spec.read_text() + "image: example/course-image:1\n", encoding="utf-8")
    assert _spec_image(nbg, settings) == "example/course-image:1"
