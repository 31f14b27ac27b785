"""Every shipped course notebook runs in the learner image and grades right; a broken notebook
fails the regression with its notebook, cell and reason. Real papermill, Docker, nbgrader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onelab.course import load_courses
from tests.conftest import onelab, platform_env
from tests.courses import minicourse

pytestmark = pytest.mark.integration


def _regress(tmp_path: Path, courses: Path | None, *args: str):
    out = tmp_path / "report"
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    extra = ["--courses-dir", str(courses)] if courses else []
    res = onelab("regress", *args, *extra, "--out", str(out),
                 env=platform_env("oltest-rg", state), check=False, timeout=1500)
    return res, out


def test_shipped_courses_pass_regression_and_grading_qa(tmp_path, docker_ready):
    courses = load_courses()
    assignments = [(c.id, a.id) for c in courses for a in c.assignments]
    assert len(assignments) >= 7 and len(courses) >= 2
    res, out = _regress(tmp_path, None)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["device"] == "cpu"
    got = {(a["course"], a["assignment"]): a for a in report["assignments"]}
    assert sorted(got) == sorted(assignments)
    for key, a in got.items():
        assert a["passed"] and a["notebooks"], key
        score, top = a["qa"]["solution"]
        assert score == top > 0, key  # the solution earns full marks
        assert a["qa"]["released"][0] == 0, key  # the released version earns nothing
        assert a["qa"]["always_equal"][1] == top, key  # the always-equal probe was graded
        if key[0] == "onelab-101":  # the example course's tests convert before comparing
            assert a["qa"]["weak_tests"] == [], key
        course = next(c for c in courses if c.id == key[0])
        thresholds = course.assignment(key[1]).regress.thresholds
        assert thresholds and set(thresholds) <= set(a["notebooks"][0]["metrics"]), key
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "PASSED" in md and "report.svg" in md
    assert (out / "report.svg").read_text().startswith("<svg")
    executed = list((out / "notebooks").rglob("*.ipynb"))
    assert len(executed) >= 7


def test_a_raising_cell_fails_the_regression_naming_notebook_and_cell(tmp_path, docker_ready):
    courses = minicourse.write(tmp_path / "courses",
                               extra=["ratio = 1 / (N_SAMPLES - N_SAMPLES)"])
    res, out = _regress(tmp_path, courses, "--no-qa")
    assert res.returncode == 1
    assert ("FAILED: mini/01-line/line.ipynb cell 7 (ratio = 1 / (N_SAMPLES - N_SAMPLES)): "
            "ZeroDivisionError: division by zero") in res.stdout
    assert not json.loads((out / "report.json").read_text())["passed"]


def test_a_cell_past_its_time_limit_is_named_with_its_limit_not_as_keyboardinterrupt(
        tmp_path, docker_ready):
    courses = minicourse.write(tmp_path / "courses", extra=["import time\ntime.sleep(100)"],
                               timeout=10)
    res, out = _regress(tmp_path, courses)
    assert res.returncode == 1
    assert ("FAILED: mini/01-line/line.ipynb: cell 7 ran past its time limit of 10 s and was "
            "stopped (import time)") in res.stdout, res.stdout[-3000:]
    assert "KeyboardInterrupt" not in res.stdout
    # grading QA grades the solution under the same per-cell limit, and says so too
    assert ("FAILED: mini/01-line: grading the solution version: line: cell 7 ran past its "
            "time limit of 10 s and was stopped") in res.stdout, res.stdout[-3000:]
    report = json.loads((out / "report.json").read_text())
    run = report["assignments"][0]["notebooks"][0]
    assert run["stop"] == {"kind": "cell_timeout", "cell": 7, "limit": 10}
    assert run["stopped"] == "cell 7 ran past its time limit of 10 s and was stopped"
    assert "cell 7 ran past its time limit of 10 s" in (out / "report.md").read_text()


def test_a_metric_below_its_threshold_fails_the_regression(tmp_path, docker_ready):
    courses = minicourse.write(tmp_path / "courses", threshold="0.0001")
    res, _ = _regress(tmp_path, courses, "--no-qa")
    assert res.returncode == 1
    assert "FAILED: mini/01-line/line.ipynb cell 7 (the `metrics` cell): metric mse = " in res.stdout
    assert "is not <= 0.0001" in res.stdout


def test_parameters_reach_the_notebook_and_full_overrides_them(tmp_path, docker_ready):
    courses = minicourse.write(tmp_path / "courses")
    small, out = _regress(tmp_path, courses, "--no-qa")
    assert small.returncode == 0, small.stdout[-3000:]
    assert json.loads((out / "report.json").read_text())["assignments"][0]["notebooks"][0][
        "metrics"]["n"] == 300
    full, out = _regress(tmp_path, courses, "--no-qa", "--full")
    assert full.returncode == 0, full.stdout[-3000:]
    assert json.loads((out / "report.json").read_text())["assignments"][0]["notebooks"][0][
        "metrics"]["n"] == 5000


def test_a_test_that_passes_on_its_own_fails_qa(tmp_path, docker_ready):
    nb = minicourse.notebook()
    nb.cells[4].source = "assert True  # passes without any answer"
    courses = minicourse.write(tmp_path / "courses", nb=nb)
    res, _ = _regress(tmp_path, courses)
    assert res.returncode == 1
    assert ("FAILED: mini/01-line: the released version earns 2 points without any answer"
            in res.stdout), res.stdout[-3000:]


def test_tests_an_always_equal_answer_passes_are_reported_and_fail_only_when_strict(
        tmp_path, docker_ready):
    courses = minicourse.write(tmp_path / "courses", nb=minicourse.answer_notebook(),
                               name="answer.ipynb")
    res, out = _regress(tmp_path, courses)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    for weak in ("test_weak", "test_pair"):  # `answer == 42`; `a, b = pair(); a * b == 42`
        assert (f"WEAK TEST: mini/01-line: fooled by an always-equal answer: {weak} "
                "(answer.ipynb)") in res.stdout, res.stdout[-3000:]
    assert "test_float" not in res.stdout and "test_isinstance" not in res.stdout
    assert "hint: " in res.stdout and "float(x) == 42.0" in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and not report["strict_tests"]
    qa = report["assignments"][0]["qa"]
    assert qa["solution"] == [4, 4] and qa["released"] == [0, 4]
    assert qa["always_equal"] == [2, 4]
    assert sorted(w["grade_id"] for w in qa["weak_tests"]) == ["test_pair", "test_weak"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Tests an always-equal answer passes" in md and "test_weak (answer.ipynb)" in md
    assert "2 weak tests" in (out / "report.svg").read_text()

    strict, out = _regress(tmp_path, courses, "--strict-tests")
    assert strict.returncode == 1, strict.stdout[-3000:]
    assert ("FAILED: mini/01-line: fooled by an always-equal answer: test_weak (answer.ipynb)"
            in strict.stdout)
    assert "test_float" not in strict.stdout
    assert not json.loads((out / "report.json").read_text())["passed"]
